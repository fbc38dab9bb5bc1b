"""Same code, different provider: the choice lives in examples/soundforge.toml."""

from pathlib import Path

from soundforge import Client

with Client(Path(__file__).with_name("soundforge.toml")) as client:
    for row in client.providers():
        print(f"{row.name:13} {'ok' if row.available else 'no':3} policy={'pass' if row.policy_allows else 'refuse'}")
    generation = client.generate("calm ambient pads", duration=10, seed=4)
    print("made by", generation.provenance.provider, "under", generation.license.id)
    print("attempts:", [(a.provider, a.outcome) for a in generation.provenance.attempts])

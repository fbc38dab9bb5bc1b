"""Generate a track with the built-in synthesizer and save it with licence and provenance."""

from soundforge import generate

generation = generate("upbeat synthwave, driving bass, 110 BPM, in C minor", duration=15, seed=1)
path = generation.save("quickstart.wav", overwrite=True)[0]
print(f"wrote {path}: {generation.duration:.1f} s at {generation.sample_rate} Hz")
print("licence:", generation.license.summary())
print("plan:", generation.provenance.parameters)

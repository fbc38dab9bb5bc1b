import subprocess
import sys


def test_import_does_not_load_engines() -> None:
    code = (
        "import sys, soundforge; soundforge.GenerationRequest; "
        "heavy=('torch','transformers','diffusers','soundfile','httpx','ray','fsspec'); "
        "bad=[m for m in heavy if m in sys.modules]; "
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_public_names_resolve() -> None:
    import soundforge

    for name in soundforge.__all__:
        assert getattr(soundforge, name) is not None

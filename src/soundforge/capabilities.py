"""What a provider's model can do, declared by its backend and checked before any work starts."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_serializer

#: The request fields soundforge handles itself, by the step of a request's life that owns them
#: (`soundforge.run.steps` declares each step: its check at plan time and what it does to the generation).
STEP_FIELDS: dict[str, frozenset[str]] = {
    "output": frozenset({"output_format", "loudness", "trim", "fade_in", "fade_out"}),
    "cost": frozenset({"max_cost"}),
    "quality": frozenset({"quality", "quality_retries"}),
    "loop": frozenset({"loop", "loop_bars"}),
    "stems": frozenset({"stems"}),
    "watermark": frozenset({"watermark"}),
}
#: Every field a step owns: every backend supports them, since soundforge does the work.
SDK_FIELDS = frozenset().union(*STEP_FIELDS.values())


class Capabilities(BaseModel):
    """The request features one model of one provider supports."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    min_duration: float = 0.0
    max_duration: float
    sample_rates: tuple[int, ...] = Field(description="output sample rates the model can produce")
    channels: tuple[int, ...] = (1, 2)
    fields: frozenset[str] = Field(frozenset(), description="optional request fields the model honours")
    max_outputs: int = 1
    seed_deterministic: bool = True
    streaming: bool = Field(False, description="whether audio can be streamed as it is made (Client.stream)")
    vocals: bool = Field(False, description="whether the model can sing; one that cannot is always instrumental")
    audio_prompt_modes: frozenset[str] = Field(
        frozenset(), description="what the model does with an audio_prompt (continuation, variation, repaint, ...)"
    )
    stems: frozenset[str] = Field(frozenset(), description="the stems audio_prompt_mode='extract' can return")
    cost_hint: str = "free, local"

    @field_serializer("fields", "audio_prompt_modes", "stems")
    def _sorted(self, names: frozenset[str]) -> list[str]:
        """Sets as sorted lists: the same JSON every time (a set's order changes with the process's hash seed)."""
        return sorted(names)

    def supports(self, field: str) -> bool:
        """Whether the model honours an optional request field."""
        return field in self.fields or field in SDK_FIELDS

    def honours(self, field: str, value: object) -> bool:
        """Whether the model honours `field` set to `value`: `supports`, plus what follows from the model itself
        (`instrumental=True` from a model that never sings)."""
        if field == "instrumental" and value is True and not self.vocals:
            return True
        if field == "audio_prompt_mode":
            return value in self.audio_prompt_modes
        if field == "stem":
            return value in self.stems
        if field == "streaming":
            return self.streaming
        return self.supports(field)

    def offers(self, field: str) -> str:
        """What the model accepts for a field it honours only for some values ("" for the others)."""
        if field == "audio_prompt_mode":
            return f"its audio_prompt modes: {', '.join(sorted(self.audio_prompt_modes)) or 'none'}"
        if field == "stem":
            return f"its stems: {', '.join(sorted(self.stems)) or 'none'}"
        return ""


class ModelInfo(BaseModel):
    """One model a backend offers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    description: str = ""
    capabilities: Capabilities

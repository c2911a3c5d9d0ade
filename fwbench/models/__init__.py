"""Model registry: one line per model (name, "module:Class", optional default overrides).

Models of other packages come from the entry-point group `fwbench.models` or are named as
`package.module:Class` (see `fwbench.registry`); `check_model` is the contract they must meet.
"""

from fwbench.registry import Registry


def check_model(cls) -> str | None:
    """What makes `cls` break the model contract (fwbench.models.base), or None."""
    import dataclasses

    from fwbench.models.base import Model, RecurrentCore

    if not (isinstance(cls, type) and issubclass(cls, Model)):
        return "is not a model: subclass fwbench.models.base.RecurrentCore or ImageModel"
    if cls.consumes not in ("sequence", "image"):
        return f"consumes {cls.consumes!r}; expected 'sequence' or 'image'"
    if not dataclasses.is_dataclass(cls.Config) or not any(
            f.name == "hidden" for f in dataclasses.fields(cls.Config)):
        return "has no settings dataclass with `hidden`: subclass fwbench.models.base.CoreConfig"
    if issubclass(cls, RecurrentCore):
        missing = [m for m in ("initial_state", "step")
                   if getattr(cls, m) is getattr(RecurrentCore, m)]
        if missing:
            return f"is a recurrent core without {' and '.join(missing)}"
    return None


MODELS = Registry("model", group="fwbench.models", check=check_model)
MODELS.add("irnn", "fwbench.models.irnn:IRNN")
MODELS.add("irnn-ln", "fwbench.models.irnn:IRNN", layernorm=True)
MODELS.add("lstm", "fwbench.models.lstm:LSTM")
MODELS.add("alstm", "fwbench.models.alstm:AssociativeLSTM")
MODELS.add("fastweights", "fwbench.models.fastweights:FastWeights")
MODELS.add("linear", "fwbench.models.linear:LinearFWP")
MODELS.add("delta", "fwbench.models.delta:DeltaNet")
MODELS.add("gated-delta", "fwbench.models.gated_delta:GatedDeltaNet")
MODELS.add("recurrent-delta", "fwbench.models.recurrent_delta:RecurrentDeltaNet")
MODELS.add("attention", "fwbench.models.attention:Attention")
MODELS.add("gru", "fwbench.models.gru:GRU")
MODELS.add("convnet", "fwbench.models.convnet:ConvNet")
MODELS.add("fastweights-eta0", "fwbench.models.fastweights:FastWeights", eta=0.0)
# η = 0 with irnn-ln's recurrent initialisation (W = I, not 0.05 I): only the memory differs
MODELS.add("fastweights-eta0-id", "fwbench.models.fastweights:FastWeights", eta=0.0, w_scale=1.0)
MODELS.add("fastweights-noln", "fwbench.models.fastweights:FastWeights", layernorm=False)
MODELS.add("fastweights-stopgrad", "fwbench.models.fastweights:FastWeights", stop_grad=True)
# the sum and delta rules with DPFP features (Schlag et al. 2021), sum-normalised
MODELS.add("linear-dpfp", "fwbench.models.linear:LinearFWP", feature_map="dpfp", dpfp_nu=2,
           qk_norm="sum")
MODELS.add("delta-dpfp", "fwbench.models.delta:DeltaNet", feature_map="dpfp", dpfp_nu=2,
           qk_norm="sum")

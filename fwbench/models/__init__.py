"""Model registry: one line per model (name, "module:Class", optional default overrides)."""

from fwbench.registry import Registry

MODELS = Registry("model")
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
MODELS.add("fastweights-noln", "fwbench.models.fastweights:FastWeights", layernorm=False)
MODELS.add("fastweights-stopgrad", "fwbench.models.fastweights:FastWeights", stop_grad=True)
# the sum and delta rules with DPFP features (Schlag et al. 2021), sum-normalised
MODELS.add("linear-dpfp", "fwbench.models.linear:LinearFWP", feature_map="dpfp", dpfp_nu=2,
           qk_norm="sum")
MODELS.add("delta-dpfp", "fwbench.models.delta:DeltaNet", feature_map="dpfp", dpfp_nu=2,
           qk_norm="sum")

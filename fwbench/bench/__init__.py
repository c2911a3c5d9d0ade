"""`fwbench bench`: the cost of recurrent models, measured like their accuracy.

For every hidden size and sequence length, each chosen model (and each S, for models that have
one) is measured with torch's nn.LSTM and nn.RNN(relu) of the same hidden size in the same run:
training throughput (forward, backward and Adam step), inference throughput, step-by-step
latency, memory kept for the backward pass (and peak CUDA memory), parameters and state size.
Times are medians over repeats, taken in turns after warm-up. Results are tidy rows: one per
(subject, metric), with the ratios to the two references (`vs_lstm`, `vs_rnn`): for time
metrics the speed-up (above 1: faster than the reference), for sizes the plain ratio.

This package imports no torch at the top: `table` (rows, CSV, Markdown) is read by reports;
`run`, `measure` and `subjects` do the measuring.
"""

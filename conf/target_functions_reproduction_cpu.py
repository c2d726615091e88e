# The paper's qualitative finding at CPU scale: on 200 training strings a small Qwen3-architecture
# decoder (2 layers, 4 heads, width 128, trained from scratch) fits the training set of every rule, but
# generalises only the simple ones (func10: the first bit; func13: first bit != last bit). Parity of all
# bits (func7), of 3 or 10 fixed positions (func15, func18) and one Rule-30 step (func3) stay at chance.
# (A BLOOM of the same size does not even fit the parity rules in 2,000 steps; a likely reason: ALiBi's recency bias
# averages the bits away; RoPE keeps them apart.)
# python sweep.py --base conf/target_functions_reproduction_cpu.py \
#     --vary target_func=func7,func15,func18,func3,func10,func13 --vary sequence_length=20,30 --vary seed=0x3 --yes
# (docs/target_functions/README.md: all 36 runs fit the training set; test accuracy 0.48-0.52 on the
# four hard rules, 1.0 on func10 and func13.)
task = 'target_functions'
model = 'qwen0.6B'
n_layer = 2
n_head = 4
n_kv_head = 4
n_embd = 128
intermediate_size = 512
target_func = 'func7'
sequence_length = 20
train_set_size = 200
test_set_size = 2000
batch_size = 20
n_epochs = 200
lr = 1e-3
eta_min = 1e-5
weight_decay = 0.01
eval_every = 20

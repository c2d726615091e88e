# Target-function learnability at CPU scale: a small BLOOM decoder trained from scratch on 200 strings.
# python main.py --config conf/target_functions_cpu.py          (one run, ~8 s on 2 cores)
# python sweep.py --base conf/target_functions_cpu.py --vary target_func=func7,func10 --yes
task = 'target_functions'
target_func = 'func10'
sequence_length = 20
train_set_size = 200
test_set_size = 2000
model = 'bloom'
n_layer = 2
n_head = 4
n_embd = 128
batch_size = 20
n_epochs = 30
lr = 1e-3
eta_min = 1e-5
weight_decay = 0.01
eval_every = 5
seed = 0

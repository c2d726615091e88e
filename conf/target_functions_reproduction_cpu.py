# The paper's qualitative finding at CPU scale: 200 training strings, a 2-layer BLOOM fits the training
# set of every rule but generalises only the simple ones (func10 first bit, func13 x_0 != x_{L-1}).
# python sweep.py --base conf/target_functions_reproduction_cpu.py \
#     --vary target_func=func7,func15,func18,func3,func10,func13 --vary sequence_length=20,30 --yes
task = 'target_functions'
model = 'bloom'
n_layer = 2
n_head = 4
n_embd = 128
target_func = 'func7'
sequence_length = 20
train_set_size = 200
test_set_size = 2000
batch_size = 20
n_epochs = 100
lr = 1e-3
eta_min = 1e-5
weight_decay = 0.01
eval_every = 10

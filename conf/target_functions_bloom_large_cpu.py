# CPU scale of the large-data BLOOM sweep: 2 layers, 128 wide, 10,000 training strings.
# python sweep.py --base conf/target_functions_bloom_large_cpu.py --vary target_func=func18,func3,func22 \
#     --vary sequence_length=30,20 --yes
task = 'target_functions'
model = 'bloom'
n_layer = 2
n_head = 4
n_embd = 128
target_func = 'func18'
sequence_length = 20
train_set_size = 10000
test_set_size = 2000
batch_size = 256
n_epochs = 20
lr = 1e-3
eta_min = 1e-5
eval_every = 5

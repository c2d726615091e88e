# CPU scale of the from-scratch ablation: each preset shrunk to 2 layers, 128 wide (same families).
# python sweep.py --base conf/target_functions_scratch_ablation_cpu.py --vary model=qwen1.7B,llama3,deepseek \
#     --vary target_func=func18,func21,func17 --vary sequence_length=30,20 --yes
task = 'target_functions'
model = 'qwen1.7B'
n_layer = 2
n_head = 4
n_kv_head = 2
n_embd = 128
intermediate_size = 384
target_func = 'func18'
sequence_length = 20
train_set_size = 200
test_set_size = 2000
batch_size = 20
n_epochs = 50
lr = 1e-3
eta_min = 1e-5
eval_every = 10

# Seed README "Sweep - Training Model ablation from scratch" at the paper's size (GPU): 45 runs.
# python sweep.py --base conf/target_functions_scratch_ablation.py --vary model=qwen1.7B,llama3,deepseek \
#     --vary target_func=func18,func21,func17 --vary sequence_length=100,50,30,25,20 --yes
task = 'target_functions'
model = 'qwen1.7B'
n_layer = None
n_head = None
n_embd = None
target_func = 'func18'
sequence_length = 100
train_set_size = 200
test_set_size = 10000
batch_size = 20
n_epochs = 200
lr = 1e-5
eta_min = 1e-6
weight_decay = 0.01
eval_every = 10
eval_batch_size = 512

# Seed README "Sweep - Training Model from pretrained models" (GPU): 45 runs. The weights load from a
# local folder (no download): put Qwen3-1.7B saved with save_pretrained at pretrained_path.
# finetune_layers = N trains the head plus the top N decoder layers; 0 trains the head only; -1 everything.
# This is what the paper describes, NOT what its code ran: the original trained only the head and read
# only the first half of the digits (conf/target_functions_finetune_as_run.py reproduces that).
# python sweep.py --base conf/target_functions_finetune.py --vary target_func=func18,func3,func22 \
#     --vary sequence_length=100,50,30,25,20 --vary finetune_layers=8,4,2 --yes
task = 'target_functions'
model = 'qwen3_finetune'
pretrained_path = 'pretrained/Qwen3-1.7B'
finetune_layers = 8
target_func = 'func18'
sequence_length = 100
train_set_size = 200
test_set_size = 10000
batch_size = 20
n_epochs = 1000
lr = 5e-3
eta_min = 1e-3
weight_decay = 1e-5      # the original's (conf/settings.py there: 0.00001); this project's default is 0.01
eval_every = 50
eval_batch_size = 256

# Parameter sharing at CPU scale: composition phi 18, 2 distinct GPT-2 layers (d 64) run twice (the original's
# add_recurrence) against the same 2 layers run once; OOD accuracy is the thing to watch.
# python sweep.py --base conf/kg_reasoning_sharing_cpu.py --vary layer_repeats=1,2 --executor local --max-parallel 1 --yes
# python report.py results_new/<id> ; python plot.py results_new/<id>
task = 'kg_reasoning'
kind = 'composition'
n_entities = 200
n_relations = 20
out_degree = 20
ood_share = 0.05
test_share = 0.05
phi = 18.0
data_seed = 0
n_layer = 2
layer_repeats = 2
n_embd = 64
n_head = 4
dropout = 0.0  # the paper's GPT-2 has 0.1; 0 in this project's CPU runs (and a stack of replicates needs 0)
lr = 1e-3
weight_decay = 0.1
no_decay_bias_norm = True
lr_schedule = 'constant'
warmup_steps = 200
max_grad_norm = 1.0
batch_size = 512
n_steps = 10000
eval_every_steps = 250
seed = 0

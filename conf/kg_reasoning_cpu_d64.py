# Knowledge-graph composition at CPU scale, the faster width d = 64 (about 3x fewer FLOPs than d = 128):
# 200 entities, 20 relations, out-degree 20, 5% OOD edges, ID test share 0.05, GPT-2 4 layers d 64 4 heads,
# AdamW lr 1e-3 wd 0.1, batch 512, 200 warmup steps then constant, 10k steps, evaluated every 250 steps.
# In docs/kg_reasoning this width fitted only half its atomic facts in 10k steps on a loaded machine (d 128 is
# the one that showed the phenomenon); the sweep run there:
# python sweep.py --base conf/kg_reasoning_cpu_d64.py --vary phi=18.0,7.2 --executor local --max-parallel 1 --yes
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
n_layer = 4
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

# Knowledge-graph composition at CPU scale: 200 entities, 20 relations, out-degree 20, 5% OOD edges,
# ID test share 0.05 (3,574 held-out two-hop facts), GPT-2 4 layers d 128 4 heads, AdamW lr 1e-3,
# wd 0.1, batch 512, 200 warmup steps then constant. ~15-25 minutes a run on 2 quiet CPU cores.
# python main.py --config conf/kg_reasoning_cpu.py
# In docs/kg_reasoning (phi 18, stopped at 4,750 steps): test_inferred_id 0.86 and rising, OOD 0.005.
# python sweep.py --base conf/kg_reasoning_cpu.py --vary phi=18.0,7.2 --executor local --max-parallel 1 --yes
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
n_embd = 128
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
eval_every_steps = 500
seed = 0

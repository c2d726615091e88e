# Comparison at CPU scale: 200 entities, 20 attributes, 20 values, 10% OOD entities per attribute, 10% of
# the ID pairs held out, phi 7.2; GPT-2 4 layers d 64 4 heads, AdamW lr 1e-3 wd 0.1, batch 512, 200 warmup
# steps then constant, 10k steps (untested at this scale: a hypothesis of reference/kg_reasoning.md).
# python sweep.py --base conf/kg_reasoning_comparison_cpu.py --vary phi=3.6,7.2 --executor local --max-parallel 1 --yes
# python report.py results_new/<id> ; python plot.py results_new/<id>
task = 'kg_reasoning'
kind = 'comparison'
n_attributes = 20
n_values = 20
n_entities = 200
ood_share = 0.1
test_share = 0.1
phi = 7.2
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

# Weight decay at CPU scale: composition at phi 7.2 (where wd 0.1 fits training long before it
# generalises), the conf of kg_reasoning_cpu_d64.py otherwise; does more weight decay grok sooner?
# python sweep.py --base conf/kg_reasoning_weight_decay_cpu.py --vary weight_decay=0.1,0.3,1.0 --executor local --max-parallel 1 --yes
# python report.py results_new/<id> ; python plot.py results_new/<id>
task = 'kg_reasoning'
kind = 'composition'
n_entities = 200
n_relations = 20
out_degree = 20
ood_share = 0.05
test_share = 0.05
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

# Composition at the paper's scale (Wang et al. 2024, Fig. 2 / 3): 2000 entities, 200 relations, out-degree 20,
# 5% OOD edges, ID test share 0.005, GPT-2 8 layers d 768 12 heads dropout 0.1, AdamW lr 1e-4 wd 0.1 (not on
# biases and norms), batch 512, 2000 warmup steps then constant, clip 1.0, 2M steps. Needs a GPU (days).
# The phi sweep:
# python sweep.py --base conf/kg_reasoning_composition_paper.py --vary phi=3.6,5.4,7.2,9.0,12.6,18.0 --yes
# python report.py results_new/<id> ; python plot.py results_new/<id>
task = 'kg_reasoning'
kind = 'composition'
n_entities = 2000
n_relations = 200
out_degree = 20
ood_share = None  # the paper's for the kind: 5% of the edges (composition), 10% of the entities (comparison)
test_share = None  # the paper's for the kind: 0.005 (composition), 0.1 (comparison); so a sweep over kind
                   # trains each kind at its own paper shares
phi = 7.2
eval_size = 3000
data_seed = 0
# mixed_precision: 'auto' is bf16 autocast on a GPU; the original trained with fp16 autocast and a loss
# scaler (its --fp16): --set mixed_precision=fp16 runs so
n_layer = 8
n_embd = 768
n_head = 12
dropout = 0.1
lr = 1e-4
weight_decay = 0.1
no_decay_bias_norm = True
lr_schedule = 'constant'
warmup_steps = 2000
max_grad_norm = 1.0
batch_size = 512
n_steps = 2000000
eval_every_steps = 1000  # the headline times (train accuracy > 99% at ~14K steps) need this resolution
checkpoint_every_steps = 50000  # a run of days outlives a job's time limit (sweep.py --time, 24 h by default):
                                # each requeue resumes from the last checkpoint (~0.7 GB: the weights and
                                # AdamW's state), not from step 0
seed = 0
# mixed_precision: 'auto' is bf16 autocast on a GPU; the original trained with fp16 autocast and a loss
# scaler (its --fp16): --set mixed_precision=fp16 runs so

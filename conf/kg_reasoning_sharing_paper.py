# Parameter sharing at the paper's scale: composition, the layer stack run twice (the original's
# add_recurrence): 4 distinct GPT-2 layers (d 768, 12 heads) applied twice, the depth of the 8-layer model
# with half its layer parameters (the original's Appendix E.2 command: --n_layer 4 --add_recurrence). The
# paper: it slowly gains OOD ability.
# python sweep.py --base conf/kg_reasoning_sharing_paper.py --vary layer_repeats=1,2 --yes
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
n_layer = 4
layer_repeats = 2
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

# Large depth, experiment 5: 3 layers of one attention head and a GELU MLP of width W = 0, 8d, ..., 40d, N = 70.
#   python sweep.py --base conf/assoc_memory_depth_exp5.py --vary d=7 --vary W=0,56,112,168,224,280 --vary seed=0,1,2,3,4 --yes
#   python sweep.py --base conf/assoc_memory_depth_exp5.py --vary d=10 --vary W=0,80,160,240,320,400 --vary seed=0,1,2,3,4 --yes
#   python sweep.py --base conf/assoc_memory_depth_exp5.py --vary d=13 --vary W=0,104,208,312,416,520 --vary seed=0,1,2,3,4 --yes
# (a --vary with one value fixes d for that sweep and records it in the sweep's manifest)
task = 'assoc_memory'
N = 70
alphas = [1.0, 1.0, 1.0]
model = 'transformer'
d = 10
d_h = None
H = 1
W = 160
nb_layers = 3
batch_size = 512
num_batch = 128
n_epochs = 64
lr = 2.5e-3                # the original's constant effective rate (factors lr = lr_low = 5e-2)
lr_end = 2.5e-3
eval_every = 16
seed = 0
# The original's protocol (docs/assoc_memory/README.md, 'Defaults that differ from the original'):
data_seed = 2222           # one table and one training set for every model of a sweep (seeds vary the init
                           # and the batch order only), as the original's notebook (seed 2222)
sampler = 'original'       # drawn as the original draws them: with 2222, its notebook's table and set exactly
init = 'original'          # its initialisation: embeddings U(+-1/sqrt(d)), U(+-1/sqrt(d_h)), Xavier q/k/v
lr_ramp = 'epoch'          # its LinearLR, stepped once per epoch (constant within an epoch)

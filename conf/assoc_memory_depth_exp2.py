# Large depth, experiment 2: 3 layers, accuracy against d_h at N = 70, d = 10, H = 21.
#   python sweep.py --base conf/assoc_memory_depth_exp2.py --vary d_h=1,2,3,4,5,6,7,8,9,10 --vary seed=0,1,2,3,4 --yes
task = 'assoc_memory'
N = 70
alphas = [1.0, 1.0, 1.0]
model = 'aot'
d = 10
d_h = 5
H = 21
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

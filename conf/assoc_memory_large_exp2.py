# Large dimension, experiment 2: accuracy against d_h at N = 200, d = 50, H = 11.
#   python sweep.py --base conf/assoc_memory_large_exp2.py --vary d_h=1,5,10,15,20,25,30,35,40,45,50 --vary seed=0,1,2,3,4 --yes
task = 'assoc_memory'
N = 200
alphas = [1.0, 1.0, 1.0]
model = 'aot'
d = 50
d_h = 25
H = 11
nb_layers = 1
batch_size = 1024
num_batch = 64
n_epochs = 64
lr = 1e-2
lr_end = 5e-4
eval_every = 16
seed = 0
# The original's protocol (docs/assoc_memory/README.md, 'Defaults that differ from the original'):
data_seed = 2222           # one table and one training set for every model of a sweep (seeds vary the init
                           # and the batch order only), as the original's notebook (seed 2222)
sampler = 'original'       # drawn as the original draws them: with 2222, its notebook's table and set exactly
init = 'original'          # its initialisation: embeddings U(+-1/sqrt(d)), U(+-1/sqrt(d_h)), Xavier q/k/v
lr_ramp = 'epoch'          # its LinearLR, stepped once per epoch (constant within an epoch)

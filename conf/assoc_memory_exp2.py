# Experiment 2: accuracy against the head dimension d_h at d = 10, H = 20, N = 50 (original: 0.081 -> 0.804,
# roughly quadratic in d_h).
#   python sweep.py --base conf/assoc_memory_exp2.py --vary d_h=1,2,3,4,5,6,7,8,9,10 --vary seed=0,1,2,3,4 --yes
task = 'assoc_memory'
N = 50
alphas = [1.0, 1.0, 1.0]
model = 'aot'
d = 10
d_h = 5                    # d_h < d: one compress 10 -> d_h and one decompress d_h -> 10, shared
H = 20
nb_layers = 1
batch_size = 256
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

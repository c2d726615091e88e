# Experiment 1 (paper, appendix B): accuracy against the number of heads H, d = d_h, N = 50.
# At d = 10 (the values the original's CSV holds: 0.130 0.324 0.506 0.685 0.861 0.963 0.997):
#   python sweep.py --base conf/assoc_memory_exp1.py --vary H=1,6,11,16,21,26,31 --vary seed=0,1,2,3,4 --yes
# Every d of the paper (also the data of experiment 4):
#   python sweep.py --base conf/assoc_memory_exp1.py --vary d=3,4,5,6,7,8,9,10,11,12,13 --vary H=1,6,11,16,21,26,31 --vary seed=0,1,2,3,4 --yes
task = 'assoc_memory'
N = 50
alphas = [1.0, 1.0, 1.0]
model = 'aot'
d = 10
d_h = None
H = 11
nb_layers = 1
batch_size = 256
num_batch = 64
n_epochs = 64
lr = 1e-2                  # original: lr = 0.1, lr_low = lr * 5e-2 as factors -> rates 1e-2 ... 5e-4
lr_end = 5e-4
eval_every = 16
seed = 0
# The original's protocol (docs/assoc_memory/README.md, 'Defaults that differ from the original'):
data_seed = 2222           # one table and one training set for every model of a sweep (seeds vary the init
                           # and the batch order only), as the original's notebook (seed 2222)
sampler = 'original'       # drawn as the original draws them: with 2222, its notebook's table and set exactly
init = 'original'          # its initialisation: embeddings U(+-1/sqrt(d)), U(+-1/sqrt(d_h)), Xavier q/k/v
lr_ramp = 'epoch'          # its LinearLR, stepped once per epoch (constant within an epoch)

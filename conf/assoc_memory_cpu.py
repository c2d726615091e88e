# Associative memory at CPU scale: experiment 1 of the paper at d = d_h = 10 (N = 50, 2500 associations).
# One run is 4096 Adam steps of batch 256 (64 epochs of the fixed 16,384 trigrams): ~5 s on one core.
# python main.py --config conf/assoc_memory_cpu.py                      (one run, H = 11)
# python sweep.py --base conf/assoc_memory_cpu.py --vary H=1,6,11,16,21,26,31 --vary seed=0,1 --executor local --max-parallel 1 --yes
# python report.py results_new/<id> --group ; python plot.py results_new/<id>
# The original's means over 5 models (exp 1, d = 10): 0.130 0.324 0.506 0.685 0.861 0.963 0.997.
task = 'assoc_memory'
N = 50
alphas = [1.0, 1.0, 1.0]   # nb_tokens None = [N, N, 1]: (t0, t1) uniform, t2 = f(t0, t1)
model = 'aot'
d = 10
d_h = None                 # = d: no compress/decompress maps
H = 11
nb_layers = 1
batch_size = 256
num_batch = 64             # training set = 256 * 64 = 16,384 sequences, sampled once
n_epochs = 64
lr = 1e-2                  # the original's effective rate: its lr = 0.1 used as a factor gives 0.1 * 0.1
lr_end = 5e-4              # ... and its lr_low = 0.005 gives 0.1 * 0.005
loss = 'ce'
eval_every = 16
seed = 0

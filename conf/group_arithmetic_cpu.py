# Group arithmetic at CPU scale: the data boundary n ~ |G| ln|G| on Z_23 (a few seconds a run on 1 core).
# n_train = round(critical_ratio_multiplier * |G| ln|G|): 1.75 -> 126, 2.75 -> 198, 3.75 -> 270 of 529 pairs.
# One run:  python main.py --config conf/group_arithmetic_cpu.py
# The boundary (expected: 1.75 never generalises, 2.75 groks late, 3.75 generalises fast):
# python sweep.py --base conf/group_arithmetic_cpu.py --vary critical_ratio_multiplier=1.75,2.75,3.75 \
#       --vary seed=1,2,3 --executor local --max-parallel 1 --yes
# The same at M = 71 (2.75 stays below the boundary, 3.25 and 3.75 grok): add --vary M=71 and use
# critical_ratio_multiplier=2.75,3.25,3.75 (a few minutes a run on 1 core).
task = 'group_arithmetic'
group_type = 'modular_addition'
M = 23
use_critical_ratio = True
critical_ratio_multiplier = 2.75
hidden_size = 512
activation = 'sqr'
loss_func = 'mse'
optim = 'adam'
lr = 0.01
weight_decay = 5e-4
n_epochs = 3000
batch_size = 0
eval_every = 10
seed = 1

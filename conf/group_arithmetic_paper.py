# Group arithmetic, the paper's base run (Tian, NeurIPS 2025, arXiv 2410.01779): a 2-layer x^2 network
# trained full batch with the mse loss on 90% of the Z_M addition table, 10k epochs.
# One run:   python main.py --config conf/group_arithmetic_paper.py
# The paper's Fig. 3 setting with this project's split and seeding (seed 1: train 1.0 at epoch 10, test 1.0 at 86):
#            python main.py --config conf/group_arithmetic_paper.py --set n_epochs=1000
# The paper's own Fig. 3 numbers (train 1.0 at 17, test 1.0 at 45) are one logged run of the original code,
# replayed exactly by conf/group_arithmetic_fig3_replay.py (seed 5, its split, seeding and initialisation).
# The paper's sweep (5 x 4 x 3 x 5 = 300 runs; about 30 s each on a GPU):
# python sweep.py --base conf/group_arithmetic_paper.py --vary weight_decay=1e-5,5e-5,1e-4,2e-4,5e-4 \
#       --vary hidden_size=256,512,1024,2048 --vary M=23,71,127 --vary seed=1,2,3,4,5
task = 'group_arithmetic'
group_type = 'modular_addition'
M = 23
hidden_size = 512
activation = 'sqr'
loss_func = 'mse'
optim = 'adam'
lr = 0.01
weight_decay = 1e-4
test_size = 0.1
n_epochs = 10000
batch_size = 0
eval_every = 1
seed = 1

# Group arithmetic, the paper's Fig. 3 run: Z_23 addition, 90% of the table for training, x^2 network,
# mse, Adam lr 0.01, wd 1e-4. Paper: train accuracy 1.0 at epoch 17, test 1.0 at epoch 45.
# python main.py --config conf/group_arithmetic_fig3.py
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
n_epochs = 1000
batch_size = 0
eval_every = 1
seed = 1

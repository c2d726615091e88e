# Group arithmetic: the exact replay of the original's Figure 3 log (modular_addition_simple2_fig3.log in
# facebookresearch/luckmatters, ssl/real-dataset/cogo/, run 2024-09-12 with the code at git hash ba2de90).
# The log's own settings (seed 5, M 23, hidden 512, sqr, mse, Adam lr 0.01, wd 1e-4, test_size 0.1,
# 10000 epochs) plus the three things the original did that this project's defaults do not:
#   split_method 'sklearn'        scikit-learn's train_test_split(test_size=0.1, random_state=seed): 476 / 53 rows
#   init_seed_offset 2            torch seeded with seed + 2 before the weights are drawn (its set_all_seeds)
#   first_layer_init 'per_operand' the Sep-2024 first layer: two Linear(23, 512) maps, drawn one after the other
# The log: train accuracy 1.0 at epoch 17, test 0.5 at 27, 0.9 at 33, 1.0 at 45 (this replay: the same, on CPU;
# see docs/group_arithmetic/README.md). The log ran 10000 epochs; 200 show every event and take seconds.
#   python main.py --config conf/group_arithmetic_fig3_replay.py
#   python main.py --config conf/group_arithmetic_fig3_replay.py --set n_epochs=10000    # the log's length
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
split_method = 'sklearn'
init_seed_offset = 2
first_layer_init = 'per_operand'
n_epochs = 200
batch_size = 0
eval_every = 1
seed = 5

"""The printed round summary: the quickstart's format, parts left out when their metric is missing."""

from selm.eval.summary import summary_line

FIRST = {"round": 0, "reward_mean": 0.45, "gold_reward_mean": 0.45, "kl": 0.0, "win_rate_vs_initial": None,
         "length_mean": 5.0}


def test_round_zero_and_a_training_round():
    assert summary_line(FIRST, FIRST, 2) == "round 0/2  gold 0.450 (+0.000 vs round 0)  reward 0.450  kl 0.00  len 5.0"
    m = {"round": 1, "reward_mean": 0.4771, "gold_reward_mean": 0.4771, "kl": -0.0512, "win_rate_vs_initial": 0.5625,
         "pairs/count": 16, "train/rewards/accuracies": 0.5625, "length_mean": 5.0}
    assert summary_line(m, FIRST, 2) == ("round 1/2  gold 0.477 (+0.027 vs round 0)  reward 0.477  kl -0.05  "
                                         "win vs π0 0.56  pairs 16  train acc 0.56  len 5.0")


def test_a_pairwise_judge_without_a_task_shows_no_reward():
    m = {"round": 3, "reward_mean": None, "kl": 1.234, "win_rate_vs_initial": 0.75, "length_mean": 12.25}
    assert summary_line(m, m, 3) == "round 3/3  kl 1.23  win vs π0 0.75  len 12.2"

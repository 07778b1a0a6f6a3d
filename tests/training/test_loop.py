import torch
import torch.nn.functional as F

from dptrain.training.loop import RecordLoss, TensorRecords


def test_weighted_loss_is_a_plain_mean_of_weighted_record_losses():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    weights = torch.tensor([1.0, 3.0])
    loss = RecordLoss(multilabel=False, class_weights=weights)
    per_record = F.cross_entropy(logits, labels, reduction="none") * weights[labels]
    assert torch.isclose(loss(logits, labels), per_record.mean())
    loss.reduction = "none"  # what Opacus' ghost clipping sets
    assert torch.allclose(loss(logits, labels), per_record)


def test_records_are_fetched_a_batch_at_a_time():
    records = TensorRecords(torch.arange(10.0).reshape(5, 2), torch.arange(5))
    features, labels = records.__getitems__([4, 0])
    assert features.tolist() == [[8.0, 9.0], [0.0, 1.0]] and labels.tolist() == [4, 0]
    empty_features, empty_labels = records.__getitems__([])
    assert empty_features.shape == (0, 2) and empty_labels.shape == (0,)

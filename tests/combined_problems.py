"""The combined loss of a balanced layout, one configuration per (alpha, tau), in the optimiser's indexed form,
with its closed-form derivatives: shared by the tests of the derivatives and of the Newton finish."""

from simulate import loss_derivatives, losses


def indexed_combined_problem(alpha, tau, m=2, n=3, p=2):
    """(loss_fn(z, index), derivatives(z, index)) for alpha, tau (B,) tensors and the (m, n, p) layout."""
    labels, instances = losses.balanced_layout(m, n, p)
    closed_form = loss_derivatives.combined_loss_derivatives(labels, instances)

    def loss_fn(z, index):
        return losses.combined_loss(z, labels, instances, alpha[index], tau[index])

    def derivatives(z, index):
        return closed_form(z, alpha[index], tau[index])

    return loss_fn, derivatives

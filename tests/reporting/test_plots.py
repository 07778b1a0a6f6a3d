"""The audit's figures carry what a reader needs to judge them: DP maximum and noise floor."""

from dptrain.reporting.plots import plot_survival, write_audit_plots

from .test_audit_markdown import audit_of


def test_the_survival_curve_shows_the_noise_floor_at_each_risk_threshold():
    audit = audit_of(16).audit
    figure = plot_survival(audit)
    for axes in figure.axes:
        if not axes.get_visible():
            continue
        labels = axes.get_legend_handles_labels()[1]
        assert any(label.startswith("noise floor (mean, 95% level)") for label in labels)
        assert not any(label.startswith("DP maximum") for label in labels)  # non-private


def test_every_audit_plot_is_written(tmp_path):
    files = write_audit_plots(audit_of(16).audit, tmp_path)
    assert all(path.stat().st_size > 1000 for path in files.values())

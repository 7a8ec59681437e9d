"""The BSSN paper's analysis (and the MSN paper's mean drift) on your own model: probes, Lipschitz bounds,
health warnings, typed records.

Files a run writes when ``diagnostics.every > 0`` (one JSON object per line, floats or null; the
records are :class:`ProbeRecord` and :class:`HealthWarning`, each with ``to_json``/``from_json``):

``diagnostics.jsonl`` -- one record per probe step (at step 0, every ``diagnostics.every`` steps, at the end)::

    {"step": 500,
     "layers": {                      # D's Conv/Linear layers by module name, in forward order
        "net.0": {"kind": "Conv2d", "fan_in": 27, "fan_out": 576,
                  "sigma": 1.02, "sigma1": 1.0, "sigma2": 1.04,   # the normalization's estimates (null if none)
                  "strict_sigma": 1.9,                            # operator norm of W_eff (null unless requested)
                  "raw_spectral": 3.1, "raw_frobenius": 5.2,      # ||W||_2 and ||W||_F of the trainable weight
                  "var_ratio": 0.41,                              # fan_in * Var(W_eff); LeCun = 1
                  "grad_raw": 0.01, "grad_effective": 0.03,       # ||dL/dW||_F w.r.t. the raw and the effective weight
                  "ref_xavier": 0.09, "ref_kaiming": 1.98,        # the variance ratio under Xavier and Kaiming init
                  "act_mean": 0.02, "act_std": 0.05,              # mean |channel mean| and RMS channel std of the
                                                                  #  layer's output (real + fake pooled): mean drift
                  "grad_sparsity": 0.03},                         # share of dL/dW entries with |g| <= 0.01 RMS(g)
        ...},                                                     # (the last three: absent in older files)
     "input_grad": {"real": {"mean": .., "min": .., "max": ..},   # per-sample ||grad_x D(x)||_2
                    "fake": {...}, "interpolated": {...}},
     "d_real": 0.3, "d_fake": -0.2,                               # mean raw D outputs
     "loss_d": 1.7,                                               # the D loss on the probe batch
     "lipschitz_upper": 12.5,                                     # product bound (null if not computable,
                                                                  #  then "lipschitz_upper_note" says why)
     "lipschitz_lower": 0.8}                                      # largest input-gradient norm seen

``health.jsonl`` -- one record per warning (each rule fires once per layer)::

    {"step": 1200, "rule": "exploding_gradient", "layer": "net.6", "value": 3.2e4,
     "threshold": 1e3, "message": "..."}

Figures and a summary of a run: ``gannorm analyze RUN``; the paper's experiments: ``gannorm experiment NAME``.
"""
from .health import HealthMonitor, HealthRules, HealthWarning, check
from .lipschitz import explain_upper_bound, lipschitz_lower_bound, lipschitz_upper_bound, operator_norm
from .probes import SPARSITY_TAU, flat_scalars, gradient_sparsity, headline_scalars, probe
from .records import GradStats, LayerProbe, ProbeRecord

__all__ = ["GradStats", "HealthMonitor", "HealthRules", "HealthWarning", "LayerProbe", "ProbeRecord", "SPARSITY_TAU",
           "check", "explain_upper_bound", "flat_scalars", "gradient_sparsity", "headline_scalars",
           "lipschitz_lower_bound", "lipschitz_upper_bound", "operator_norm", "probe"]

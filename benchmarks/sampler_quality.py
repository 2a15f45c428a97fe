"""Accuracy of the deterministic samplers against the exact probability-flow ODE solution for Gaussian data.

For x0 ~ N(mu, s² I) the exact denoiser is E[x0 | x_t] = mu + α s²/(α² s² + σ²)(x_t - α mu), and the ODE
started at t = T-1 ends at x0 = mu + s (x_T - α_T mu)/sqrt(α_T² s² + σ_T²). Prints one JSON object: for each
schedule (sigmoid T=1000 as RainDiff, sigmoid T=50 as STLDM) and data law, the RMS error of DDIM (η = 0) and
DPM-Solver++(2M) versus the number of denoiser calls, the error floor left by the final denoising jump
from t = 0 (exact ODE to t = 0, then the exact denoiser), and whether DPM-Solver++ at 20 calls is at least as
accurate as DDIM at 100. Usage: ``python -m benchmarks.sampler_quality [--samples 4096 --output FILE]``.
"""

from __future__ import annotations

import argparse
import math

import torch

from benchmarks.harness import output_argument, write_result
from nowcast_pl.diffusion import ddim_sample, dpmpp_2m_sample, sigmoid_schedule

CALLS = (5, 10, 20, 50, 100, 250)
DATA_LAWS = ({"mu": 0.3, "s": 0.5}, {"mu": 0.0, "s": 1.0})


def gaussian_denoiser(ac: torch.Tensor, mu: float, s: float):
    def denoise(x_t: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        alpha_bar = ac.to(x_t.dtype)[t].view(-1, *[1] * (x_t.dim() - 1))
        alpha = alpha_bar.sqrt()
        return mu + alpha * s**2 / (alpha_bar * s**2 + 1 - alpha_bar) * (x_t - alpha * mu)
    return denoise


def ode_map(ac: torch.Tensor, mu: float, s: float, x: torch.Tensor, t_from: int, t_to: int) -> torch.Tensor:
    """Exact ODE flow from time t_from to t_to (-1 = clean): standardise under one marginal, rescale to the other."""
    def moments(t: int) -> tuple[float, float]:
        a = 1.0 if t < 0 else ac[t].item()
        return math.sqrt(a) * mu, math.sqrt(a * s**2 + 1 - a)
    (m_from, sd_from), (m_to, sd_to) = moments(t_from), moments(t_to)
    return m_to + sd_to * (x - m_from) / sd_from


def rms(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).pow(2).mean().sqrt().item()


def measure(T: int, law: dict, samples: int) -> dict:
    ac, mu, s = sigmoid_schedule(T), law["mu"], law["s"]
    x_T = torch.randn(samples, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = ode_map(ac, mu, s, x_T, T - 1, -1)
    denoiser = gaussian_denoiser(ac, mu, s)
    floor = rms(denoiser(ode_map(ac, mu, s, x_T, T - 1, 0), torch.zeros(samples, dtype=torch.long)), exact)
    calls = [n for n in CALLS if n <= T]
    ddim = {n: rms(ddim_sample(denoiser, None, ac, steps=n, x_T=x_T), exact) for n in calls}
    dpmpp = {n: rms(dpmpp_2m_sample(denoiser, None, ac, steps=n, x_T=x_T), exact) for n in calls}
    result = {"schedule": f"sigmoid T={T}", "data": f"N({mu}, {s}^2)", "final_jump_floor_rms": floor,
              "rms_error_vs_calls": {"ddim_eta0": ddim, "dpmpp_2m": dpmpp}}
    if 100 in ddim:
        result["dpmpp_20_at_least_as_accurate_as_ddim_100"] = dpmpp[20] <= ddim[100]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=4096, help="rows of 4 values of initial noise")
    output_argument(parser)
    args = parser.parse_args()
    cases = [measure(T, law, args.samples) for T in (1000, 50) for law in DATA_LAWS]
    key = "dpmpp_20_at_least_as_accurate_as_ddim_100"
    checks = [case[key] for case in cases if key in case]
    write_result({"benchmark": "sampler_quality", "dtype": "float64", "samples": args.samples * 4, "cases": cases,
                  key: all(checks)}, args.output, module="benchmarks.sampler_quality", argv=None)


if __name__ == "__main__":
    main()

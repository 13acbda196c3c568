"""The Triton kernels compiled for an H100 (sm_90) without a GPU, summarised for
``test_sm90_compile.py``: ``python -m tests.kernels.sm90_ptx`` prints the summaries as JSON.
Pointers, sizes and row strides are declared 16-byte divisible and unit strides constant, as
Triton specialises them at a real launch. Triton's CPU interpreter (``TRITON_INTERPRET=1``)
replaces the compiler's language functions while it runs kernels, so the tests compile in a
process of their own when it is on."""

import json

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from sparsetorch.kernels import band_attention, bsr_triton, finite_triton

SM90 = GPUTarget("cuda", 90, 32)

BSR_TYPES = {
    **dict.fromkeys(["x_ptr", "v_ptr", "b_ptr", "y_ptr"], "*bf16"),
    **dict.fromkeys(["crow_ptr", "col_ptr"], "*i32"),
    **dict.fromkeys(["M", "BLOCK_ROWS", "stride_xm", "stride_ym"], "i32"),
    **dict.fromkeys(["M_KEY", "K_KEY", "DENSITY_KEY", "X_ROW_MAJOR_KEY"], "i32"),
}
BSR_CASES = [(256, True, 3), (128, False, 3), (512, True, 5)]  # (BLOCK_M, W_LEFT, stages)
CLEAN_TYPES = {
    **dict.fromkeys(["k_ptr", "v_ptr", "k_out", "v_out"], "*bf16"),
    "bad_ptr": "*i1",
    **dict.fromkeys(["ROWS", "H", "N", "sk_b", "sk_h", "sk_n", "sv_b", "sv_h", "sv_n"], "i32"),
}

BAND_TYPES = {
    **dict.fromkeys(["Q", "K", "V", "Out"], "*bf16"),
    "LSE": "*fp32",
    "BAD": "*i1",
    **dict.fromkeys(["sqb", "sqh", "sqn", "skb", "skh", "skn", "svb", "svh", "svn"], "i32"),
    **dict.fromkeys(["sob", "soh", "son", "H", "GROUP", "N", "LO", "HI"], "i32"),
    **dict.fromkeys(["WIDTH", "NKEY"], "i32"),
    "qk_scale": "fp32",
}
BAND_BWD_TYPES = {
    **BAND_TYPES,
    **dict.fromkeys(["DO", "DK", "DV", "DQ", "DOC"], "*bf16"),
    "DELTA": "*fp32",
    "CNT": "*i32",
    **dict.fromkeys(["sdb", "sdh", "sdn", "sdkb", "sdkh", "sdkn", "sdvb", "sdvh", "sdvn"], "i32"),
    **dict.fromkeys(["sdqb", "sdqh", "sdqn", "HK"], "i32"),
    "sm_scale": "fp32",
}
# the band forward's first autotuned config (the one-loop form, 128 x 64, 8 warps, 3 stages)
BAND_FWD = {"HEAD_DIM": 128, "BLOCK_M": 128, "BLOCK_N": 64, "ONE_LOOP": True, "TMA": False}
BAND_FWD["POLY"] = False

FILL_TYPES = {
    **dict.fromkeys(["x_ptr", "out_ptr"], "*bf16"),
    "marks_ptr": "*i1",
    **dict.fromkeys(["ROWS", "H", "N", "sx_b", "sx_h", "sx_n"], "i32"),
}


def compile_sm90(fn, types: dict, constants: dict, divisible: list[str], **options) -> dict:
    names = list(fn.arg_names)
    signature = {n: ("constexpr" if n in constants else types[n]) for n in names}
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in divisible if n in names}
    source = ASTSource(fn=fn, signature=signature, constexprs=constants, attrs=attrs)
    kernel = triton.compile(source, target=SM90, options=options)
    ptx = kernel.asm["ptx"]
    ops = ["cp.async.cg.shared.global", "cp.async.wait_group", "wgmma.mma_async", "ld.global"]
    ops += ["ld.global.v4", "st.global.v4"]
    return {"shared": kernel.metadata.shared, **{op: ptx.count(op) for op in ops}}


def compile_all() -> dict:
    out = {}
    for block_m, w_left, stages in BSR_CASES:
        constants = {
            "stride_xk": 1, "stride_yn": 1, "BS": 64, "HAS_BIAS": False,
            "BLOCK_M": block_m, "W_LEFT": w_left,
        }  # fmt: skip
        divisible = [n for n in BSR_TYPES if not n.endswith("_KEY")]
        out[f"bsr {block_m} {w_left} {stages}"] = compile_sm90(
            bsr_triton._bsr_kernel, BSR_TYPES, constants, divisible, num_warps=8,
            num_stages=stages,
        )  # fmt: skip
    constants = {"sk_d": 1, "sv_d": 1, "DK": 128, "DV": 128, "BLOCK_DK": 128, "BLOCK_DV": 128}
    constants["BLOCK_R"] = 32
    divisible = [n for n in CLEAN_TYPES if n != "bad_ptr"]
    out["clean"] = compile_sm90(
        finite_triton._clean_kernel, CLEAN_TYPES, constants, divisible, num_warps=4
    )
    divisible = ["Q", "K", "V", "Out", "LSE", "BAD", "sqb", "sqh", "sqn", "skb", "skh", "skn"]
    divisible += ["svb", "svh", "svn", "sob", "soh", "son"]
    for mode in ("plain", "detect"):  # the first pass without and with containment
        flags = {"CONTAIN": False, "DETECT": mode == "detect"}
        out[f"band {mode}"] = compile_sm90(
            band_attention._band_fwd_k, BAND_TYPES, {**BAND_FWD, **flags}, divisible,
            num_warps=8, num_stages=3,
        )  # fmt: skip
    bm, bn, warps, stages = band_attention._FIXUP
    out["band fixup"] = compile_sm90(
        band_attention._band_fixup, BAND_TYPES,
        {"HEAD_DIM": 128, "BLOCK_M": bm, "BLOCK_N": bn, "SPAN": band_attention._SPAN},
        divisible, num_warps=warps, num_stages=stages,
    )  # fmt: skip
    # the backward with containment: each kernel at its first autotuned config
    divisible_bwd = [*divisible, "DO", "DK", "DV", "DQ", "DOC", "DELTA", "CNT", "sdb", "sdh"]
    divisible_bwd += ["sdn", "sdkb", "sdkh", "sdkn", "sdvb", "sdvh", "sdvn", "sdqb", "sdqh", "sdqn"]
    for name, kernel, (bm, bn, warps, stages) in (
        ("dkdv", band_attention._band_bwd_dkdv_k, band_attention._DKDV[0]),
        ("dq", band_attention._band_bwd_dq_k, band_attention._DQ[0]),
    ):
        for contain in (False, True):
            out[f"band {name} contain={contain}"] = compile_sm90(
                kernel, BAND_BWD_TYPES,
                {"HEAD_DIM": 128, "BLOCK_M": bm, "BLOCK_N": bn, "CONTAIN": contain},
                divisible_bwd, num_warps=warps, num_stages=stages,
            )  # fmt: skip
    out["band delta contain"] = compile_sm90(
        band_attention._bwd_delta, BAND_BWD_TYPES,
        {"HEAD_DIM": 128, "BLOCK_M": 64, "CONTAIN": True}, divisible_bwd, num_warps=4,
    )  # fmt: skip
    constants = {"sx_d": 1, "D": 128, "BLOCK_D": 128, "BLOCK_R": 32, "NAN": True}
    divisible = ["x_ptr", "out_ptr", "ROWS", "N", "sx_b", "sx_h", "sx_n"]
    out["fill"] = compile_sm90(
        finite_triton._fill_kernel, FILL_TYPES, constants, divisible, num_warps=4
    )
    return out


if __name__ == "__main__":
    print(json.dumps(compile_all()))

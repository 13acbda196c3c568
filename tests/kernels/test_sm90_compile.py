"""The Triton kernels compiled for an H100 (sm_90) on this machine, without a GPU: what their
docstrings promise about the generated code (asynchronous copies a stage ahead, wgmma, shared
memory, 128-bit accesses) is read off the PTX. Pointers and row strides are declared 16-byte
divisible and unit strides constant, as Triton specialises them at a real launch."""

import pytest

from sparsetorch.kernels import bsr_triton, finite_triton

triton = pytest.importorskip("triton")
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

SM90 = GPUTarget("cuda", 90, 32)


def compiled_form(fn, monkeypatch):
    """``fn`` as a compilable JITFunction. Under TRITON_INTERPRET=1 ``triton.jit`` wraps the
    kernel and the jit helpers it calls for the interpreter: rewrap them while compiling."""
    if hasattr(fn, "cache_key"):
        return fn
    scope = fn.fn.__globals__
    for name, value in list(scope.items()):
        if type(value).__name__ == "InterpretedFunction":
            monkeypatch.setitem(scope, name, triton.runtime.jit.JITFunction(value.fn))
    return scope[fn.fn.__name__]


def compile_sm90(fn, types: dict, constants: dict, divisible: list[str], **options):
    names = list(fn.arg_names)
    signature = {n: ("constexpr" if n in constants else types[n]) for n in names}
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in divisible}
    source = ASTSource(fn=fn, signature=signature, constexprs=constants, attrs=attrs)
    try:
        return triton.compile(source, target=SM90, options=options)
    except RuntimeError as exc:  # no ptxas for this machine in the wheel
        if "ptxas" in str(exc):
            pytest.skip(f"cannot compile for sm_90 here: {exc}")
        raise


BSR_TYPES = {
    **dict.fromkeys(["x_ptr", "v_ptr", "b_ptr", "y_ptr"], "*bf16"),
    **dict.fromkeys(["crow_ptr", "col_ptr"], "*i32"),
    **dict.fromkeys(["M", "BLOCK_ROWS", "stride_xm", "stride_ym"], "i32"),
    **dict.fromkeys(["M_KEY", "K_KEY", "DENSITY_KEY", "X_ROW_MAJOR_KEY"], "i32"),
}


@pytest.mark.parametrize(
    ("block_m", "w_left", "stages"), [(256, True, 3), (128, False, 3), (512, True, 5)]
)
def test_bsr_kernel_pipelines_its_loads_on_sm90(block_m, w_left, stages, monkeypatch):
    constants = {
        "stride_xk": 1, "stride_yn": 1, "BS": 64, "HAS_BIAS": False,
        "BLOCK_M": block_m, "W_LEFT": w_left,
    }  # fmt: skip
    divisible = [n for n in BSR_TYPES if not n.endswith("_KEY")]  # pointers, M, row strides
    kernel = compile_sm90(
        compiled_form(bsr_triton._bsr_kernel, monkeypatch),
        BSR_TYPES,
        constants,
        divisible,
        num_warps=8,
        num_stages=stages,
    )
    ptx = kernel.asm["ptx"]
    assert "cp.async.cg.shared.global" in ptx and "cp.async.wait_group" in ptx  # a stage ahead
    assert "wgmma.mma_async" in ptx
    # the operand buffers are those the autotuner's shared-memory pruning counts
    assert kernel.metadata.shared - bsr_triton._smem_bytes(block_m, 64, stages) in range(0, 1025)


def test_nonfinite_cleaning_moves_128_bit_words_on_sm90(monkeypatch):
    types = {
        **dict.fromkeys(["k_ptr", "v_ptr", "k_out", "v_out"], "*bf16"),
        "bad_ptr": "*i1",
        **dict.fromkeys(["ROWS", "H", "N", "sk_b", "sk_h", "sk_n", "sv_b", "sv_h", "sv_n"], "i32"),
    }
    constants = {"sk_d": 1, "sv_d": 1, "DK": 128, "DV": 128, "BLOCK_DK": 128, "BLOCK_DV": 128}
    constants["BLOCK_R"] = 32
    divisible = [n for n in types if n != "bad_ptr"]
    kernel = compile_sm90(
        compiled_form(finite_triton._clean_kernel, monkeypatch), types, constants, divisible,
        num_warps=4,
    )  # fmt: skip
    ptx = kernel.asm["ptx"]
    assert ptx.count("ld.global") == ptx.count("ld.global.v4")  # every load 128-bit
    assert "st.global.v4" in ptx

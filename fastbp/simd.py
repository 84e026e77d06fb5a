"""Vector values as Numba locals: a few LLVM vector operations that loops in ``@njit`` code can hold in registers.

Numba has no vector type of its own, and its auto-vectorised loops keep every running sum in memory when they run
over one dimension and accumulate across another (an outer product). ``Vec(dtype, width)`` is an LLVM
``<width x dtype>`` value: kept in a local variable through a loop, it stays in registers (a width of 32 float64 is
four 512-bit registers), so a kernel can hold a register tile of running sums, as a GEMM micro-kernel does.
Every operation rounds as its scalar twin does, lane by lane; ``vfma`` rounds once.
"""
from llvmlite import ir
from numba.core import cgutils
from numba.core import types as nbtypes
from numba.extending import intrinsic, models, register_model


class Vec(nbtypes.Type):
    """``width`` values of ``dtype`` (a Numba float type) in one LLVM vector."""

    def __init__(self, dtype, width):
        self.dtype, self.width = dtype, width
        super().__init__(name=f"Vec({dtype}, {width})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, ir.VectorType(dmm.lookup(fe_type.dtype).get_value_type(), fe_type.width))


def _element_pointer(context, builder, aryty, ary, indices):
    array = context.make_array(aryty)(context, builder, ary)
    return cgutils.get_item_pointer(context, builder, aryty, array, indices, wraparound=False)


@intrinsic(prefer_literal=True)
def vzero(typingctx, ary, width):
    """A Vec of ``width`` (a literal int) zeros of ``ary``'s dtype."""
    if not isinstance(width, nbtypes.IntegerLiteral):
        return None
    vt = Vec(ary.dtype, width.literal_value)

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vt), None)
    return vt(ary, width), codegen


@intrinsic(prefer_literal=True)
def vload(typingctx, ary, i, k, width):
    """ary[i, k:k + width] of a C-contiguous 2-D array as a Vec; the caller guarantees the range lies inside the
    row."""
    if not (isinstance(width, nbtypes.IntegerLiteral) and isinstance(ary, nbtypes.Array) and ary.ndim == 2
            and ary.layout == "C"):
        return None
    vt = Vec(ary.dtype, width.literal_value)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], [args[1], args[2]])
        ptr = builder.bitcast(ptr, context.get_value_type(vt).as_pointer())
        return builder.load(ptr, align=context.get_abi_sizeof(context.get_value_type(ary.dtype)))
    return vt(ary, i, k, width), codegen


@intrinsic
def vstore(typingctx, ary, i, k, v):
    """ary[i, k:k + v.width] = v (a C-contiguous 2-D array of v's dtype)."""
    if not (isinstance(v, Vec) and isinstance(ary, nbtypes.Array) and ary.ndim == 2 and ary.layout == "C"
            and ary.dtype == v.dtype):
        return None

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], [args[1], args[2]])
        ptr = builder.bitcast(ptr, args[3].type.as_pointer())
        builder.store(args[3], ptr, align=context.get_abi_sizeof(context.get_value_type(ary.dtype)))
        return context.get_dummy_value()
    return nbtypes.void(ary, i, k, v), codegen


@intrinsic
def vsplat(typingctx, x, like):
    """The number x, converted to the dtype of the Vec ``like``, in each of its lanes."""
    if not (isinstance(like, Vec) and isinstance(x, nbtypes.Number)):
        return None

    def codegen(context, builder, sig, args):
        vt = args[1].type
        value = context.cast(builder, args[0], sig.args[0], sig.args[1].dtype)
        undef = ir.Constant(vt, None)
        first = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
        return builder.shuffle_vector(first, undef, ir.Constant(ir.VectorType(ir.IntType(32), vt.count),
                                                                [0] * vt.count))
    return like(x, like), codegen


@intrinsic
def vfma(typingctx, a, b, c):
    """a * b + c lane by lane, rounded once (Vecs of one type)."""
    if not (isinstance(c, Vec) and a == c and b == c):
        return None

    def codegen(context, builder, sig, args):
        vt = args[2].type
        bits = 64 if c.dtype == nbtypes.float64 else 32
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vt, [vt, vt, vt]),
                                            f"llvm.fma.v{vt.count}f{bits}")
        return builder.call(fn, list(args))
    return c(a, b, c), codegen


@intrinsic
def vmul(typingctx, a, b):
    """a * b lane by lane (Vecs of one type)."""
    if not (isinstance(a, Vec) and a == b):
        return None

    def codegen(context, builder, sig, args):
        return builder.fmul(args[0], args[1])
    return a(a, b), codegen

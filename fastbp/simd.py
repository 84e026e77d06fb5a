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


def _lanes(values):
    """A constant vector of lane numbers, as LLVM's shufflevector takes them."""
    return ir.Constant(ir.VectorType(ir.IntType(32), len(values)), list(values))


def _splat(builder, value, vt):
    """The LLVM value ``value`` in every lane of a vector of type vt."""
    undef = ir.Constant(vt, None)
    first = builder.insert_element(undef, value, ir.Constant(ir.IntType(32), 0))
    return builder.shuffle_vector(first, undef, _lanes([0] * vt.count))


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
        return _splat(builder, context.cast(builder, args[0], sig.args[0], sig.args[1].dtype), args[1].type)
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


def _masked(context, builder, aryty, args, vt, name, fnty):
    """(llvm.masked.<name> for vectors of type vt, pointer to ary[i, k], mask of lanes < n, alignment) for an
    intrinsic called as f(ary, i, k, ..., n) with n last: what vload_first and vstore_first share."""
    i32 = ir.IntType(32)
    ptr = builder.bitcast(_element_pointer(context, builder, aryty, args[0], [args[1], args[2]]), vt.as_pointer())
    n = args[-1]
    lanes = ir.VectorType(i32, vt.count)
    mask = builder.icmp_signed("<", ir.Constant(lanes, list(range(vt.count))),
                               _splat(builder, builder.trunc(n, i32) if n.type.width > 32 else n, lanes))
    bits = 64 if vt.element == ir.DoubleType() else 32
    opaque = getattr(ptr.type, "is_opaque", False)
    suffix = f"v{vt.count}f{bits}.p0" + ("" if opaque else f"v{vt.count}f{bits}")
    fn = cgutils.get_or_insert_function(builder.module, fnty(ptr.type, mask.type), f"llvm.masked.{name}.{suffix}")
    return fn, ptr, mask, ir.Constant(i32, bits // 8)


@intrinsic(prefer_literal=True)
def vload_first(typingctx, ary, i, k, n, width):
    """ary[i, k:k + n] of a C-contiguous 2-D array as a Vec of ``width`` (a literal int) lanes, zeros in lanes n
    and above, which are not read (0 <= n <= width; the n values lie inside the row)."""
    if not (isinstance(width, nbtypes.IntegerLiteral) and isinstance(ary, nbtypes.Array) and ary.ndim == 2
            and ary.layout == "C"):
        return None
    vt = Vec(ary.dtype, width.literal_value)

    def codegen(context, builder, sig, args):
        lt = context.get_value_type(vt)
        fn, ptr, mask, align = _masked(context, builder, sig.args[0], args[:4], lt, "load",
                                       lambda p, m: ir.FunctionType(lt, [p, ir.IntType(32), m, lt]))
        return builder.call(fn, [ptr, align, mask, ir.Constant(lt, None)])
    return vt(ary, i, k, n, width), codegen


@intrinsic
def vstore_first(typingctx, ary, i, k, v, n):
    """ary[i, k:k + n] = the first n lanes of v (a C-contiguous 2-D array of v's dtype); the elements after them
    are neither read nor written (0 <= n <= v.width)."""
    if not (isinstance(v, Vec) and isinstance(ary, nbtypes.Array) and ary.ndim == 2 and ary.layout == "C"
            and ary.dtype == v.dtype):
        return None

    def codegen(context, builder, sig, args):
        lt = args[3].type
        fn, ptr, mask, align = _masked(context, builder, sig.args[0], args, lt, "store",
                                       lambda p, m: ir.FunctionType(ir.VoidType(), [lt, p, ir.IntType(32), m]))
        builder.call(fn, [args[3], ptr, align, mask])
        return context.get_dummy_value()
    return nbtypes.void(ary, i, k, v, n), codegen


@intrinsic
def vsum(typingctx, v):
    """The sum of v's lanes, added in pairs (lane i + lane i + w/2, halving the width w until one is left): a fixed
    order, the same wherever it is used."""
    if not (isinstance(v, Vec) and v.width & (v.width - 1) == 0):
        return None

    def codegen(context, builder, sig, args):
        value, width, i32 = args[0], v.width, ir.IntType(32)
        while width > 1:
            half = width // 2
            low = builder.shuffle_vector(value, value, _lanes(range(half)))
            high = builder.shuffle_vector(value, value, _lanes(range(half, width)))
            value, width = builder.fadd(low, high), half
        return builder.extract_element(value, ir.Constant(i32, 0))
    return v.dtype(v), codegen


@intrinsic
def vadd(typingctx, a, b):
    """a + b lane by lane (Vecs of one type)."""
    if not (isinstance(a, Vec) and a == b):
        return None

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])
    return a(a, b), codegen


@intrinsic
def prefetch(typingctx, ary, i, k):
    """Ask the CPU to start loading the cache line that holds ary[i, k] (a 2-D array); results are unchanged."""
    def codegen(context, builder, sig, args):
        a = context.make_array(sig.args[0])(context, builder, args[0])
        ptr = cgutils.get_item_pointer(context, builder, sig.args[0], a, [args[1], args[2]], wraparound=False)
        opaque = getattr(ptr.type, "is_opaque", False)  # LLVM's untyped pointers (newer llvmlite) or typed ones
        if not opaque:
            ptr = builder.bitcast(ptr, ir.IntType(8).as_pointer())
        i32 = ir.IntType(32)
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]),
                                            "llvm.prefetch.p0" if opaque else "llvm.prefetch.p0i8")
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])  # read, keep, data
        return context.get_dummy_value()
    return nbtypes.void(ary, i, k), codegen


@intrinsic(prefer_literal=True)
def vload_splat(typingctx, ary, i, k, width):
    """ary[i, k] (a C-contiguous 2-D array) in each of ``width`` (a literal int) lanes: a broadcast load, its
    address taken without Numba's index checks."""
    if not (isinstance(width, nbtypes.IntegerLiteral) and isinstance(ary, nbtypes.Array) and ary.ndim == 2):
        return None
    vt = Vec(ary.dtype, width.literal_value)

    def codegen(context, builder, sig, args):
        ptr = _element_pointer(context, builder, sig.args[0], args[0], [args[1], args[2]])
        return _splat(builder, builder.load(ptr), context.get_value_type(vt))
    return vt(ary, i, k, width), codegen


@intrinsic(prefer_literal=True)
def vload_pair_splat(typingctx, ary, i, k, width):
    """[ary[i, k], ary[i, k + 1]] repeated over ``width`` (an even literal int) lanes (one 128-bit broadcast
    load in float64); the pair lies inside the row of a C-contiguous 2-D array."""
    if not (isinstance(width, nbtypes.IntegerLiteral) and width.literal_value % 2 == 0
            and isinstance(ary, nbtypes.Array) and ary.ndim == 2 and ary.layout == "C"):
        return None
    vt = Vec(ary.dtype, width.literal_value)

    def codegen(context, builder, sig, args):
        et = context.get_value_type(ary.dtype)
        ptr = _element_pointer(context, builder, sig.args[0], args[0], [args[1], args[2]])
        pair = builder.load(builder.bitcast(ptr, ir.VectorType(et, 2).as_pointer()),
                            align=context.get_abi_sizeof(et))
        return builder.shuffle_vector(pair, pair, _lanes([0, 1] * (vt.width // 2)))
    return vt(ary, i, k, width), codegen


@intrinsic(prefer_literal=True)
def vfirst(typingctx, v, n):
    """The first ``n`` (a literal int) lanes of v, as a Vec of n (the low part of its register)."""
    if not (isinstance(v, Vec) and isinstance(n, nbtypes.IntegerLiteral) and n.literal_value <= v.width):
        return None
    vt = Vec(v.dtype, n.literal_value)

    def codegen(context, builder, sig, args):
        return builder.shuffle_vector(args[0], args[0], _lanes(range(vt.width)))
    return vt(v, n), codegen


@intrinsic
def vinter(typingctx, a, b):
    """[a0, b0, a1, b1, ...]: the lanes of two Vecs of one type interleaved, twice their width."""
    if not (isinstance(a, Vec) and a == b):
        return None
    vt, n = Vec(a.dtype, 2 * a.width), a.width

    def codegen(context, builder, sig, args):
        return builder.shuffle_vector(args[0], args[1], _lanes([j for i in range(n) for j in (i, n + i)]))
    return vt(a, b), codegen


def _every_other(name, first):
    @intrinsic
    def lanes(typingctx, v):
        if not (isinstance(v, Vec) and v.width % 2 == 0):
            return None
        vt = Vec(v.dtype, v.width // 2)

        def codegen(context, builder, sig, args):
            return builder.shuffle_vector(args[0], args[0], _lanes(range(first, v.width, 2)))
        return vt(v), codegen
    lanes.__name__ = name
    return lanes


vevens = _every_other("vevens", 0)
vevens.__doc__ = "[v0, v2, v4, ...]: v's even lanes, half its width."
vodds = _every_other("vodds", 1)
vodds.__doc__ = "[v1, v3, v5, ...]: v's odd lanes, half its width."

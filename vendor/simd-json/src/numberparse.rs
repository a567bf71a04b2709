#[cfg(not(feature = "approx-number-parsing"))]
mod correct;

#[cfg(feature = "approx-number-parsing")]
mod approx;

use crate::safer_unchecked::GetSaferUnchecked;

#[cfg(all(
    target_arch = "x86",
    target_feature = "ssse3",
    feature = "swar-number-parsing"
))]
use std::arch::x86 as arch;

#[cfg(all(
    target_arch = "x86_64",
    target_feature = "ssse3",
    feature = "swar-number-parsing"
))]
use std::arch::x86_64 as arch;

#[cfg(all(
    any(target_arch = "x86", target_arch = "x86_64"),
    target_feature = "ssse3",
    feature = "swar-number-parsing"
))]
use arch::{
    __m128i, _mm_cvtsi128_si32, _mm_loadu_si128, _mm_madd_epi16, _mm_maddubs_epi16,
    _mm_packus_epi32, _mm_set1_epi8, _mm_setr_epi8, _mm_setr_epi16, _mm_sub_epi8,
};

// agentgate patch: as for `ParseStrFn` (lib.rs), `parse_number` is not inlined into stage 2
// and returned its `Result<StaticNode>` through memory, which stage 2 read back before the
// stores could forward. The common numbers now come back in registers.
impl crate::Deserializer<'_> {
    #[inline(always)]
    pub(crate) fn parse_number_in_registers(
        idx: usize,
        buf: &[u8],
        negative: bool,
    ) -> crate::Result<crate::StaticNode> {
        use crate::StaticNode;
        let mut other = std::mem::MaybeUninit::uninit();
        match Self::parse_number_to_registers(idx, buf, negative, &mut other) {
            (n, 0) => Ok(StaticNode::I64(n as i64)),
            (n, 1) => Ok(StaticNode::U64(n)),
            (n, 2) => Ok(StaticNode::from(f64::from_bits(n))),
            // SAFETY: any other kind comes with the result written.
            _ => unsafe { other.assume_init() },
        }
    }

    /// The number's bits and its kind (0 `I64`, 1 `U64`, 2 `F64`); anything else (an error,
    /// a 128-bit integer, an `ordered-float` float) is written to `other` with kind 3.
    #[inline(never)]
    fn parse_number_to_registers(
        idx: usize,
        buf: &[u8],
        negative: bool,
        other: &mut std::mem::MaybeUninit<crate::Result<crate::StaticNode>>,
    ) -> (u64, u8) {
        use crate::StaticNode;
        match Self::parse_number(idx, buf, negative) {
            Ok(StaticNode::I64(n)) => (n as u64, 0),
            Ok(StaticNode::U64(n)) => (n, 1),
            // With `ordered-float` (whose F64 holds no plain f64), floats take the slot.
            #[cfg(not(feature = "ordered-float"))]
            Ok(StaticNode::F64(n)) => (n.to_bits(), 2),
            result => {
                other.write(result);
                (0, 3)
            }
        }
    }
}

#[cfg_attr(not(feature = "no-inline"), inline)]
pub fn is_integer(c: u8) -> bool {
    c.is_ascii_digit()
}

// We need to check that the character following a zero is valid. This is
// probably frequent and it is hard than it looks. We are building all of this
// just to differentiate between 0x1 (invalid), 0,1 (valid) 0e1 (valid)...
const STRUCTURAL_OR_WHITESPACE_OR_EXPONENT_OR_DECIMAL_NEGATED: [bool; 256] = [
    false, true, true, true, true, true, true, true, true, false, false, true, true, false, true,
    true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true,
    true, false, true, true, true, true, true, true, true, true, true, true, true, false, true,
    false, true, true, true, true, true, true, true, true, true, true, true, false, true, true,
    true, true, true, true, true, true, true, true, false, true, true, true, true, true, true,
    true, true, true, true, true, true, true, true, true, true, true, true, true, true, true,
    false, true, false, true, true, true, true, true, true, true, false, true, true, true, true,
    true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true,
    true, false, true, false, true, true, true, true, true, true, true, true, true, true, true,
    true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true,
    true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true,
    true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true,
    true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true,
    true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true,
    true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true,
    true, true, true, true, true, true, true, true, true, true, true, true, true, true, true, true,
    true, true, true, true, true, true, true,
];

#[cfg_attr(not(feature = "no-inline"), inline)]
fn is_not_structural_or_whitespace_or_exponent_or_decimal(c: u8) -> bool {
    unsafe {
        *STRUCTURAL_OR_WHITESPACE_OR_EXPONENT_OR_DECIMAL_NEGATED.get_kinda_unchecked(c as usize)
    }
}

// #ifdef _MSC_VER
// check quickly whether the next 8 chars are made of digits
// at a glance, it looks better than Mula's
// http://0x80.pl/articles/swar-digits-validate.html

#[cfg(feature = "swar-number-parsing")]
#[cfg_attr(not(feature = "no-inline"), inline)]
#[allow(clippy::cast_ptr_alignment)]
fn is_made_of_eight_digits_fast(chars: [u8; 8]) -> bool {
    let val = u64::from_ne_bytes(chars);

    ((val & 0xF0F0_F0F0_F0F0_F0F0)
        | (((val.wrapping_add(0x0606_0606_0606_0606)) & 0xF0F0_F0F0_F0F0_F0F0) >> 4))
        == 0x3333_3333_3333_3333
}

#[cfg_attr(not(feature = "no-inline"), inline)]
#[cfg(all(
    any(target_arch = "x86", target_arch = "x86_64"),
    target_feature = "ssse3",
    feature = "swar-number-parsing",
))]
#[target_feature(enable = "ssse3")]
#[allow(
    clippy::cast_sign_loss,
    clippy::cast_possible_wrap,
    clippy::cast_ptr_alignment
)]
unsafe fn parse_eight_digits_ssse3(chars: &[u8]) -> u32 {
    unsafe {
        // this actually computes *16* values so we are being wasteful.
        let ascii0: __m128i = _mm_set1_epi8(b'0' as i8);
        let mul_1_10: __m128i =
            _mm_setr_epi8(10, 1, 10, 1, 10, 1, 10, 1, 10, 1, 10, 1, 10, 1, 10, 1);
        let mul_1_100: __m128i = _mm_setr_epi16(100, 1, 100, 1, 100, 1, 100, 1);
        let mul_1_10000: __m128i = _mm_setr_epi16(10000, 1, 10000, 1, 10000, 1, 10000, 1);
        // We know what we're doing right? :P
        let input: __m128i = _mm_sub_epi8(
            _mm_loadu_si128(
                chars
                    .get_kinda_unchecked(0..16)
                    .as_ptr()
                    .cast::<arch::__m128i>(),
            ),
            ascii0,
        );
        let t1: __m128i = _mm_maddubs_epi16(input, mul_1_10);
        let t2: __m128i = _mm_madd_epi16(t1, mul_1_100);
        let t3: __m128i = _mm_packus_epi32(t2, t2);
        let t4: __m128i = _mm_madd_epi16(t3, mul_1_10000);
        _mm_cvtsi128_si32(t4) as u32 // only captures the sum of the first 8 digits, drop the rest
    }
}

#[cfg_attr(not(feature = "no-inline"), inline)]
#[cfg(feature = "swar-number-parsing")]
#[allow(clippy::cast_ptr_alignment)]
fn parse_eight_digits_swar(chars: &[u8]) -> u32 {
    // The SWAR reduction below assumes the eight digit bytes are laid out
    // least-significant-first, so interpret the input little-endian on every
    // target (a no-op on little-endian, a byte swap on big-endian like s390x).
    let val = u64::from_le(unsafe { chars.as_ptr().cast::<u64>().read_unaligned() });
    let val = (val & 0x0F0F_0F0F_0F0F_0F0F).wrapping_mul(2561) >> 8;
    let val = (val & 0x00FF_00FF_00FF_00FF).wrapping_mul(6_553_601) >> 16;

    ((val & 0x0000_FFFF_0000_FFFF).wrapping_mul(42_949_672_960_001) >> 32) as u32
}

#[cfg(feature = "swar-number-parsing")]
#[cfg_attr(not(feature = "no-inline"), inline)]
fn parse_eight_digits_unrolled(chars: &[u8]) -> u32 {
    // Only use the SSSE3 version when the feature is statically available:
    // a per-call `is_x86_feature_detected!` check costs more than the SWAR
    // fallback (cached-atomic load + two outlined `target_feature` calls per
    // 8-digit group).
    #[cfg(all(
        any(target_arch = "x86", target_arch = "x86_64"),
        target_feature = "ssse3"
    ))]
    {
        return unsafe { parse_eight_digits_ssse3(chars) };
    }
    #[allow(unreachable_code)]
    parse_eight_digits_swar(chars)
}

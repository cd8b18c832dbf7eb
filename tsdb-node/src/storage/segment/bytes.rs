//! Bounds-checked little-endian reads from untrusted byte slices.
//!
//! Every read returns `None` instead of panicking when it would leave the slice, including when
//! `offset + width` overflows; callers turn `None` into a `Corrupt` error naming the file.

/// `len` bytes starting at `offset`, if they lie inside `buf`.
pub(crate) fn slice(buf: &[u8], offset: usize, len: usize) -> Option<&[u8]> {
    buf.get(offset..offset.checked_add(len)?)
}

/// A fixed-size array starting at `offset`.
pub(crate) fn array<const N: usize>(buf: &[u8], offset: usize) -> Option<[u8; N]> {
    slice(buf, offset, N)?.try_into().ok()
}

pub(crate) fn u32_at(buf: &[u8], offset: usize) -> Option<u32> {
    array(buf, offset).map(u32::from_le_bytes)
}

pub(crate) fn u64_at(buf: &[u8], offset: usize) -> Option<u64> {
    array(buf, offset).map(u64::from_le_bytes)
}

pub(crate) fn i64_at(buf: &[u8], offset: usize) -> Option<i64> {
    array(buf, offset).map(i64::from_le_bytes)
}

/// `count * width` bytes starting at `offset`: the extent of a table of fixed-width records.
/// Checked so that a huge count read from the file can neither overflow nor reach past `buf`.
pub(crate) fn table(buf: &[u8], offset: usize, count: usize, width: usize) -> Option<&[u8]> {
    slice(buf, offset, count.checked_mul(width)?)
}

/// Binary search over `n` records whose comparison against the target may fail (because
/// decoding a record may fail). `cmp(i)` orders record `i` relative to the target. Returns the
/// index of an equal record, if any.
pub(crate) fn binary_search<E>(
    n: usize,
    mut cmp: impl FnMut(usize) -> Result<std::cmp::Ordering, E>,
) -> Result<Option<usize>, E> {
    let (mut lo, mut hi) = (0usize, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        match cmp(mid)? {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Ok(Some(mid)),
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_inside_bounds_and_refuses_outside() {
        let buf = [1u8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(u32_at(&buf, 0), Some(1));
        assert_eq!(u64_at(&buf, 4), Some(2));
        assert_eq!(u64_at(&buf, 5), None);
        assert_eq!(u32_at(&buf, usize::MAX - 1), None);
        assert_eq!(table(&buf, 0, usize::MAX, 16), None);
        assert_eq!(table(&buf, 4, 2, 4).map(<[u8]>::len), Some(8));
    }

    #[test]
    fn binary_search_finds_every_element_and_nothing_else() {
        let v = [1, 3, 5, 7, 9];
        for (i, x) in v.iter().enumerate() {
            let r: Result<_, ()> = binary_search(v.len(), |j| Ok(v[j].cmp(x)));
            assert_eq!(r, Ok(Some(i)));
        }
        for x in [0, 2, 10] {
            let r: Result<_, ()> = binary_search(v.len(), |j| Ok(v[j].cmp(&x)));
            assert_eq!(r, Ok(None));
        }
    }
}

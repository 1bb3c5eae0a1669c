//! A bounds-checked cursor over a payload: every read that runs past the end is a
//! [`FrameError::Truncated`], never a panic.

use super::{FrameError, FrameType};

pub(crate) struct Reader<'a> {
    ty: FrameType,
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(ty: FrameType, buf: &'a [u8]) -> Self {
        Reader { ty, buf }
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        if self.buf.len() < n {
            return Err(FrameError::Truncated { ty: self.ty });
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], FrameError> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.array::<1>()?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, FrameError> {
        self.array().map(u16::from_be_bytes)
    }

    pub(crate) fn u32(&mut self) -> Result<u32, FrameError> {
        self.array().map(u32::from_be_bytes)
    }

    /// What has not been read yet.
    pub(crate) fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// For payloads whose layout is fixed: anything left over is an error.
    pub(crate) fn finish(self) -> Result<(), FrameError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(FrameError::TrailingBytes { ty: self.ty })
        }
    }
}

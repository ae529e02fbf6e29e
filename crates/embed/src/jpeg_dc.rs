//! Progressive JPEGs at 1/8 scale, from their DC scans alone.
//!
//! A progressive JPEG sends the DC coefficient of every 8x8 block (the block's mean) in scans
//! of its own, before the AC scans that carry the detail and most of the bytes. When a photo is
//! at least 8 times larger than the model input needs, those first scans are enough: each block
//! becomes one pixel, its exact mean (what libjpeg's 1/8-scale decoding gives), and the AC scans
//! are skipped without being Huffman-decoded. Baseline JPEGs interleave DC and AC codes, so they
//! cannot be read this way.
//!
//! Anything else — baseline or arithmetic coding, 12-bit samples, 2 or 4 components, Adobe RGB,
//! a DNL marker, a malformed or truncated stream — gives `None`, and the caller decodes the whole
//! image as usual, which also reports broken files properly.

use image::RgbImage;

/// The pixel size of one DC sample: an 8x8 block.
pub(crate) const BLOCK: u32 = 8;

/// The mean of each 8x8 block of `full`, padded by repeating the last row and column as JPEG
/// encoders do: what a progressive JPEG's DC coefficients hold. For tests.
#[cfg(test)]
pub(crate) fn block_means(full: &RgbImage) -> RgbImage {
    let (w, h) = full.dimensions();
    RgbImage::from_fn(w.div_ceil(BLOCK), h.div_ceil(BLOCK), |bx, by| {
        let mut sum = [0u32; 3];
        for y in by * BLOCK..(by + 1) * BLOCK {
            for x in bx * BLOCK..(bx + 1) * BLOCK {
                let px = full.get_pixel(x.min(w - 1), y.min(h - 1));
                (0..3).for_each(|c| sum[c] += u32::from(px[c]));
            }
        }
        image::Rgb(sum.map(|s| ((s + 32) / 64) as u8))
    })
}

/// Mean and largest absolute difference between the channel values of two images of the same
/// size. For tests.
#[cfg(test)]
pub(crate) fn differences(a: &RgbImage, b: &RgbImage) -> (f64, u8) {
    let diffs = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y));
    let (sum, max) = diffs.fold((0u64, 0u8), |(s, m), d| (s + u64::from(d), m.max(d)));
    (sum as f64 / a.as_raw().len() as f64, max)
}

/// Decodes `bytes` at 1/8 scale: `ceil(width / 8) x ceil(height / 8)` pixels, or `None` if the
/// file is not a progressive JPEG this module can read (see the module comment). `size` is the
/// width and height the caller has already checked against its limits; a frame of another size
/// is refused before anything is allocated for it.
pub(crate) fn decode_dc(bytes: &[u8], size: (u32, u32)) -> Option<RgbImage> {
    if bytes.get(..2)? != [0xff, 0xd8] {
        return None;
    }
    let mut stream = Stream {
        expected_size: (usize::try_from(size.0).ok()?, usize::try_from(size.1).ok()?),
        ..Stream::default()
    };
    let mut pos = 2;
    loop {
        let (marker, body_start) = next_marker(bytes, pos)?;
        pos = body_start;
        match marker {
            0xd9 => break,           // EOI
            0xd0..=0xd7 => continue, // a stray restart marker carries no segment
            _ => {}
        }
        let length = usize::from(u16::from_be_bytes([*bytes.get(pos)?, *bytes.get(pos + 1)?]));
        let segment = bytes.get(pos + 2..pos + length.checked_sub(2)? + 2)?;
        pos += length;
        match marker {
            0xc2 => stream.frame(segment)?,
            0xc4 => stream.huffman_tables(segment)?,
            0xdb => stream.quantisation_tables(segment)?,
            0xdd => stream.restart_interval = usize::from(read_u16(segment, 0)?),
            0xee => stream.adobe(segment),
            0xda => {
                pos = stream.scan(segment, bytes, pos)?;
                if stream.dc_complete() {
                    break; // the rest is AC scans
                }
            }
            // Other frame types (baseline, lossless, arithmetic), DNL, a second SOI.
            0xc0 | 0xc1 | 0xc3 | 0xc5..=0xcf | 0xdc | 0xd8 => return None,
            _ => {} // APPn (EXIF, ICC, JFIF), COM and the like
        }
    }
    stream.into_image()
}

fn read_u16(data: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*data.get(at)?, *data.get(at + 1)?]))
}

/// The marker at `pos` (after any fill bytes) and the position just after it.
fn next_marker(bytes: &[u8], mut pos: usize) -> Option<(u8, usize)> {
    if *bytes.get(pos)? != 0xff {
        return None;
    }
    while *bytes.get(pos)? == 0xff {
        pos += 1;
    }
    Some((bytes[pos], pos + 1))
}

/// The position of the first marker at or after `pos` that ends entropy-coded data: not a
/// stuffed `FF 00`, not a restart marker.
fn end_of_entropy_data(bytes: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        pos += memchr::memchr(0xff, bytes.get(pos..)?)?;
        match *bytes.get(pos + 1)? {
            0x00 | 0xd0..=0xd7 | 0xff => pos += 1,
            _ => return Some(pos),
        }
    }
}

#[derive(Default)]
struct Stream {
    expected_size: (usize, usize),
    frame: Option<Frame>,
    dc_tables: [Option<Huffman>; 4],
    /// The DC entry (zig-zag index 0) of each quantisation table.
    dc_quant: [Option<u16>; 4],
    restart_interval: usize,
    /// APP14 "Adobe" colour transform: 0 means the three components are RGB, not YCbCr.
    adobe_transform: Option<u8>,
}

struct Frame {
    width: usize,
    height: usize,
    max_h: usize,
    max_v: usize,
    mcus_x: usize,
    mcus_y: usize,
    components: Vec<Component>,
}

struct Component {
    id: u8,
    h: usize,
    v: usize,
    quant_table: usize,
    /// Blocks that hold image data (a non-interleaved scan codes exactly these).
    blocks_x: usize,
    blocks_y: usize,
    /// Row length of `dc`: the block grid padded to whole MCUs.
    stride: usize,
    dc: Vec<i16>,
    /// The DC quantiser, latched when the component's first DC scan starts (as libjpeg does).
    quant: Option<u16>,
    /// The lowest DC bit received so far; `Some(0)` when the DC values are complete.
    dc_low_bit: Option<u8>,
}

impl Stream {
    fn frame(&mut self, s: &[u8]) -> Option<()> {
        let (precision, count) = (*s.first()?, usize::from(*s.get(5)?));
        let (height, width) = (usize::from(read_u16(s, 1)?), usize::from(read_u16(s, 3)?));
        if self.frame.is_some() || precision != 8 || (width, height) != self.expected_size {
            return None;
        }
        if count != 1 && count != 3 {
            return None;
        }
        let mut parts = Vec::with_capacity(count);
        for c in 0..count {
            let spec = s.get(6 + 3 * c..9 + 3 * c)?;
            let (h, v) = (usize::from(spec[1] >> 4), usize::from(spec[1] & 15));
            if !(1..=4).contains(&h) || !(1..=4).contains(&v) || spec[2] > 3 {
                return None;
            }
            parts.push((spec[0], h, v, usize::from(spec[2])));
        }
        let max_h = parts.iter().map(|p| p.1).max()?;
        let max_v = parts.iter().map(|p| p.2).max()?;
        let mcus_x = width.div_ceil(8 * max_h);
        let mcus_y = height.div_ceil(8 * max_v);
        let components = parts
            .into_iter()
            .map(|(id, h, v, quant_table)| {
                let stride = mcus_x * h;
                Component {
                    id,
                    h,
                    v,
                    quant_table,
                    blocks_x: (width * h).div_ceil(max_h).div_ceil(8),
                    blocks_y: (height * v).div_ceil(max_v).div_ceil(8),
                    stride,
                    dc: vec![0; stride * mcus_y * v],
                    quant: None,
                    dc_low_bit: None,
                }
            })
            .collect();
        self.frame = Some(Frame {
            width,
            height,
            max_h,
            max_v,
            mcus_x,
            mcus_y,
            components,
        });
        Some(())
    }

    fn huffman_tables(&mut self, mut s: &[u8]) -> Option<()> {
        while !s.is_empty() {
            let (class, id) = (s[0] >> 4, usize::from(s[0] & 15));
            let counts: &[u8; 16] = s.get(1..17)?.try_into().ok()?;
            let total: usize = counts.iter().map(|&n| usize::from(n)).sum();
            let values = s.get(17..17 + total)?;
            if class > 1 || id > 3 {
                return None;
            }
            if class == 0 {
                self.dc_tables[id] = Some(Huffman::new(counts, values)?);
            }
            s = &s[17 + total..];
        }
        Some(())
    }

    fn quantisation_tables(&mut self, mut s: &[u8]) -> Option<()> {
        while !s.is_empty() {
            let (wide, id) = (s[0] >> 4, usize::from(s[0] & 15));
            if wide > 1 || id > 3 {
                return None;
            }
            let size = if wide == 1 { 128 } else { 64 };
            let table = s.get(1..1 + size)?;
            self.dc_quant[id] = Some(if wide == 1 {
                u16::from_be_bytes([table[0], table[1]])
            } else {
                u16::from(table[0])
            });
            s = &s[1 + size..];
        }
        Some(())
    }

    fn adobe(&mut self, s: &[u8]) {
        if s.len() >= 12 && s.starts_with(b"Adobe") {
            self.adobe_transform = Some(s[11]);
        }
    }

    /// Reads a scan whose header is `header` and whose data starts at `data_start`; returns the
    /// position of the marker after it. DC scans are decoded, AC scans skipped.
    fn scan(&mut self, header: &[u8], bytes: &[u8], data_start: usize) -> Option<usize> {
        let frame = self.frame.as_mut()?;
        let count = usize::from(*header.first()?);
        let tail = header.get(1 + 2 * count..4 + 2 * count)?;
        let (start, end, high, low) = (tail[0], tail[1], tail[2] >> 4, tail[2] & 15);
        if start > 0 {
            return end_of_entropy_data(bytes, data_start); // AC: not needed at 1/8 scale
        }
        if end != 0 || count == 0 || low > 10 {
            return None;
        }
        // The scan's components in scan order; `take` refuses one listed twice.
        let mut unclaimed: Vec<Option<&mut Component>> =
            frame.components.iter_mut().map(Some).collect();
        let mut members = Vec::with_capacity(count);
        for i in 0..count {
            let (id, tables) = (header[1 + 2 * i], header[2 + 2 * i]);
            let c = unclaimed
                .iter_mut()
                .find(|c| c.as_ref().is_some_and(|c| c.id == id))?;
            let c = c.take()?;
            // Successive approximation: a first scan sends the bits above `low`, each
            // refinement one more bit, down to bit 0.
            let table = match (high, c.dc_low_bit) {
                (0, None) => {
                    c.quant = Some(self.dc_quant[c.quant_table]?);
                    Some(self.dc_tables[usize::from(tables >> 4) & 3].as_ref()?)
                }
                (h, Some(bit)) if h == bit && low + 1 == h => None,
                _ => return None,
            };
            c.dc_low_bit = Some(low);
            members.push(Member {
                table,
                prediction: 0,
                component: c,
            });
        }
        let mut bits = BitReader::new(bytes, data_start);
        let interval = self.restart_interval;
        let mut units_left = interval;
        // One unit is an MCU in an interleaved scan, a single block otherwise; restart markers
        // come every `interval` units and reset the predictions.
        let mut next_unit = |bits: &mut BitReader, members: &mut [Member]| -> Option<()> {
            if interval > 0 {
                if units_left == 0 {
                    bits.restart()?;
                    members.iter_mut().for_each(|m| m.prediction = 0);
                    units_left = interval;
                }
                units_left -= 1;
            }
            Some(())
        };
        if let [member] = members.as_mut_slice() {
            let (blocks_x, blocks_y, stride) = {
                let c = &member.component;
                (c.blocks_x, c.blocks_y, c.stride)
            };
            for y in 0..blocks_y {
                for x in 0..blocks_x {
                    next_unit(&mut bits, std::slice::from_mut(member))?;
                    member.block(&mut bits, y * stride + x, low)?;
                }
            }
        } else {
            for mcu_y in 0..frame.mcus_y {
                for mcu_x in 0..frame.mcus_x {
                    next_unit(&mut bits, &mut members)?;
                    for m in members.iter_mut() {
                        let (h, v, stride) = (m.component.h, m.component.v, m.component.stride);
                        let first = mcu_y * v * stride + mcu_x * h;
                        for row in 0..v {
                            for col in 0..h {
                                m.block(&mut bits, first + row * stride + col, low)?;
                            }
                        }
                    }
                }
            }
        }
        bits.check_not_overrun()?;
        end_of_entropy_data(bytes, bits.position())
    }

    fn dc_complete(&self) -> bool {
        self.frame
            .as_ref()
            .is_some_and(|f| f.components.iter().all(|c| c.dc_low_bit == Some(0)))
    }

    /// The image, once every component's DC values are complete.
    fn into_image(self) -> Option<RgbImage> {
        if !self.dc_complete() {
            return None;
        }
        let frame = self.frame?;
        let rgb_ids = frame.components.iter().map(|c| c.id).eq(*b"RGB");
        if frame.components.len() == 3 && (self.adobe_transform == Some(0) || rgb_ids) {
            return None; // stored as RGB: rare enough to leave to the full decoder
        }
        let (width, height) = (frame.width.div_ceil(8), frame.height.div_ceil(8));
        // For each component, the block under each output column.
        let columns: Vec<Vec<usize>> = frame
            .components
            .iter()
            .map(|c| (0..width).map(|x| x * c.h / frame.max_h).collect())
            .collect();
        let mut rows: Vec<Vec<i32>> = vec![Vec::with_capacity(width); frame.components.len()];
        let mut pixels = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            for ((c, columns), row) in frame.components.iter().zip(&columns).zip(&mut rows) {
                c.row_at_one_eighth(&frame, y, columns, row);
            }
            match rows.as_slice() {
                [grey] => {
                    for &v in grey {
                        pixels.extend([to_u8((v + 1024) << 13); 3]);
                    }
                }
                [luma, blue, red] => {
                    // JFIF's YCbCr -> RGB (ITU-R BT.601, full range), in 13-bit fixed point.
                    for ((&y, &cb), &cr) in luma.iter().zip(blue).zip(red) {
                        let y = (y + 1024) << 13;
                        pixels.extend([
                            to_u8(y + 11_485 * cr),
                            to_u8(y - 2_819 * cb - 5_850 * cr),
                            to_u8(y + 14_516 * cb),
                        ]);
                    }
                }
                _ => return None,
            }
        }
        RgbImage::from_raw(width as u32, height as u32, pixels)
    }
}

impl Component {
    /// Row `y` of the 1/8-scale image for this component: block means times 8 (the inverse DCT
    /// of a block with only a DC term is DC / 8), centred on 0 and clamped to the range valid
    /// data stays in. A subsampled component's blocks are repeated: interpolating between them
    /// was tried and agreed less with full-size decoding on real photos.
    fn row_at_one_eighth(&self, frame: &Frame, y: usize, columns: &[usize], row: &mut Vec<i32>) {
        let quant = i32::from(self.quant.unwrap_or(1));
        let blocks = &self.dc[(y * self.v / frame.max_v) * self.stride..];
        row.clear();
        row.extend(
            columns
                .iter()
                .map(|&x| (i32::from(blocks[x]) * quant).clamp(-1024, 1023)),
        );
    }
}

/// A sample times 8 in 13-bit fixed point (so 16 fraction bits) -> rounded 8-bit value.
fn to_u8(v: i32) -> u8 {
    ((v + (1 << 15)) >> 16).clamp(0, 255) as u8
}

/// A component taking part in a scan.
struct Member<'a> {
    /// The DC table of a first scan; None in a refinement scan.
    table: Option<&'a Huffman>,
    prediction: i32,
    component: &'a mut Component,
}

impl Member<'_> {
    /// One block: the first bits of its DC value, or one refinement bit.
    fn block(&mut self, bits: &mut BitReader, at: usize, low: u8) -> Option<()> {
        let dc = self.component.dc.get_mut(at)?;
        match self.table {
            Some(table) => {
                let size = table.decode(bits)?;
                self.prediction += bits.signed(size)?;
                // Valid data keeps DC values within 11 bits; anything else is corrupt.
                *dc = i16::try_from(self.prediction << low).ok()?;
            }
            None => *dc |= (bits.bits(1)? as i16) << low,
        }
        Some(())
    }
}

/// A canonical Huffman table: codes of up to `LOOKUP_BITS` bits are found in one lookup, longer
/// ones by length.
#[derive(Clone)]
struct Huffman {
    /// Indexed by the next `LOOKUP_BITS` bits: (code length, value), length 0 if longer.
    lookup: Vec<(u8, u8)>,
    /// For each length: the largest code (-1 if none) and where its values start.
    max_code: [i32; 17],
    offset: [i32; 17],
    values: Vec<u8>,
}

const LOOKUP_BITS: u32 = 9;

impl Huffman {
    fn new(counts: &[u8; 16], values: &[u8]) -> Option<Huffman> {
        let mut lookup = vec![(0u8, 0u8); 1 << LOOKUP_BITS];
        let mut max_code = [-1i32; 17];
        let mut offset = [0i32; 17];
        let (mut code, mut k) = (0i32, 0usize);
        for length in 1..=16u32 {
            let n = usize::from(counts[length as usize - 1]);
            offset[length as usize] = k as i32 - code;
            for _ in 0..n {
                if code >= 1 << length {
                    return None; // over-subscribed
                }
                if length <= LOOKUP_BITS {
                    let shift = LOOKUP_BITS - length;
                    let first = (code as usize) << shift;
                    lookup[first..first + (1 << shift)].fill((length as u8, values[k]));
                }
                code += 1;
                k += 1;
            }
            if n > 0 {
                max_code[length as usize] = code - 1;
            }
            code <<= 1;
        }
        Some(Huffman {
            lookup,
            max_code,
            offset,
            values: values.to_vec(),
        })
    }

    /// The next value (for a DC table: the bit size of the difference).
    fn decode(&self, bits: &mut BitReader) -> Option<u32> {
        let peek = bits.peek16();
        let (length, value) = self.lookup[(peek >> (16 - LOOKUP_BITS)) as usize];
        if length > 0 {
            bits.consume(u32::from(length));
            return Some(u32::from(value));
        }
        for length in LOOKUP_BITS + 1..=16 {
            let code = (peek >> (16 - length)) as i32;
            if code <= self.max_code[length as usize] {
                bits.consume(length);
                let index = usize::try_from(code + self.offset[length as usize]).ok()?;
                return self.values.get(index).map(|&v| u32::from(v));
            }
        }
        None
    }
}

/// Reads entropy-coded bits, most significant first, removing stuffed zero bytes. At a marker
/// it feeds zeros; reading any of them means the scan was cut short.
struct BitReader<'a> {
    bytes: &'a [u8],
    pos: usize,
    /// Next bits at the top.
    buffer: u64,
    count: u32,
    /// Zero bytes fed in past a marker.
    padding: u32,
}

impl<'a> BitReader<'a> {
    fn new(bytes: &'a [u8], pos: usize) -> Self {
        BitReader {
            bytes,
            pos,
            buffer: 0,
            count: 0,
            padding: 0,
        }
    }

    fn fill(&mut self) {
        while self.count <= 56 {
            let byte = match self.bytes.get(self.pos) {
                Some(0xff) if self.bytes.get(self.pos + 1) == Some(&0) => {
                    self.pos += 2;
                    0xff
                }
                Some(&b) if b != 0xff => {
                    self.pos += 1;
                    b
                }
                _ => {
                    self.padding += 1;
                    0
                }
            };
            self.buffer |= u64::from(byte) << (56 - self.count);
            self.count += 8;
        }
    }

    fn peek16(&mut self) -> u32 {
        if self.count < 16 {
            self.fill();
        }
        (self.buffer >> 48) as u32
    }

    fn consume(&mut self, n: u32) {
        self.buffer <<= n;
        self.count -= n;
    }

    /// The next `n` bits (n <= 16) as an unsigned number.
    fn bits(&mut self, n: u32) -> Option<u32> {
        if n == 0 {
            return Some(0);
        }
        if n > 16 {
            return None;
        }
        let value = self.peek16() >> (16 - n);
        self.consume(n);
        Some(value)
    }

    /// A difference coded in `size` bits (JPEG's EXTEND).
    fn signed(&mut self, size: u32) -> Option<i32> {
        let value = self.bits(size)? as i32;
        if size > 0 && value < 1 << (size - 1) {
            Some(value - (1 << size) + 1)
        } else {
            Some(value)
        }
    }

    /// Drops the rest of the byte and the restart marker that must follow.
    fn restart(&mut self) -> Option<()> {
        self.check_not_overrun()?;
        let (marker, after) = next_marker(self.bytes, self.position())?;
        if !(0xd0..=0xd7).contains(&marker) {
            return None;
        }
        *self = BitReader::new(self.bytes, after);
        Some(())
    }

    /// Position after giving back the last `n` buffered bytes (stuffed `FF 00` counts once).
    fn unread(&self, n: usize) -> usize {
        let mut pos = self.pos;
        for _ in 0..n {
            pos -= if pos >= 2 && self.bytes[pos - 2] == 0xff && self.bytes[pos - 1] == 0 {
                2
            } else {
                1
            };
        }
        pos
    }

    /// Fails if the scan needed bits past its end.
    fn check_not_overrun(&self) -> Option<()> {
        (self.count >= 8 * self.padding).then_some(())
    }

    /// Where the unread data starts (entropy data ends at the next marker from here on).
    fn position(&self) -> usize {
        let pending = (self.count / 8).saturating_sub(self.padding);
        self.unread(pending as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Progressive JPEGs (tests/data/make_progressive_fixtures.py: libjpeg's progression, and a
    /// scan script with separate DC scans and restarts) decoded from their DC scans match the
    /// block means of the full decode. With chroma subsampling a DC pixel's colour is the mean
    /// over 16 pixels instead of 8, so those files differ more at colour edges.
    #[test]
    fn progressive_fixtures_match_the_block_means_of_the_full_decode() {
        for (name, mean_tolerance, max_tolerance) in [
            // Measured (mean / max): 0.24 / 3, 0.03 / 2, 2.02 / 20, 1.58 / 20, 2.02 / 20. Dropping
            // the DC refinement bit gives 2.25 / 7, 0.93 / 4, 3.16 / 20, 2.87 / 22, 4.57 / 24.
            ("progressive_444.jpg", 0.5, 4),
            ("progressive_grey_restart.jpg", 0.3, 3),
            ("progressive_420.jpg", 2.5, 28),
            ("progressive_422_restart.jpg", 2.5, 28),
            ("progressive_420_separate_dc_scans.jpg", 2.5, 28),
        ] {
            let path = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
            let bytes = std::fs::read(&path).unwrap();
            let expected = block_means(&image::load_from_memory(&bytes).unwrap().into_rgb8());
            let small = decode_dc(&bytes, (203, 131)).unwrap();
            assert_eq!(small.dimensions(), expected.dimensions(), "{name}");
            let (mean, max) = differences(&small, &expected);
            assert!(
                mean <= mean_tolerance && max <= max_tolerance,
                "{name}: mean difference {mean:.2}, max {max}"
            );
            // A frame of another size than the caller checked is refused.
            assert!(decode_dc(&bytes, (203, 132)).is_none());
        }
    }

    /// Packs a string of '0'/'1' into bytes (padded with 1 bits, as encoders do), stuffing a
    /// zero byte after each 0xFF, and appends an EOI marker.
    fn entropy_bytes(bits: &str) -> Vec<u8> {
        let mut padded = bits.to_string();
        while !padded.len().is_multiple_of(8) {
            padded.push('1');
        }
        let mut out = Vec::new();
        for chunk in padded.as_bytes().chunks(8) {
            let byte = u8::from_str_radix(std::str::from_utf8(chunk).unwrap(), 2).unwrap();
            out.push(byte);
            if byte == 0xff {
                out.push(0);
            }
        }
        out.extend([0xff, 0xd9]);
        out
    }

    #[test]
    fn huffman_codes_short_and_long_with_stuffed_bytes() {
        // One code of each length 1..=16: 0, 10, 110, ... (value = code length).
        let counts = [1u8; 16];
        let values: Vec<u8> = (1..=16).collect();
        let table = Huffman::new(&counts, &values).unwrap();
        let code = |length: usize| "1".repeat(length - 1) + "0";
        let lengths = [1, 12, 3, 16, 9, 10, 2];
        let stream: String = lengths.iter().map(|&l| code(l)).collect();
        let bytes = entropy_bytes(&stream);
        assert!(
            bytes.windows(2).any(|w| w == [0xff, 0]),
            "the test needs a stuffed byte"
        );
        let mut bits = BitReader::new(&bytes, 0);
        for &length in &lengths {
            assert_eq!(table.decode(&mut bits), Some(length as u32));
        }
        bits.check_not_overrun().unwrap();
        assert_eq!(
            end_of_entropy_data(&bytes, bits.position()),
            Some(bytes.len() - 2)
        );
        // Then the padding (1 bits) and, past the marker, zero bits, which are an overrun.
        for _ in 0..2 {
            table.decode(&mut bits).unwrap();
        }
        assert!(bits.check_not_overrun().is_none());
    }

    #[test]
    fn differences_are_sign_extended() {
        // EXTEND: in 3 bits, 000..011 are -7..-4 and 100..111 are 4..7.
        let bytes = entropy_bytes("000011100111");
        let mut bits = BitReader::new(&bytes, 0);
        let values: Vec<i32> = (0..4).map(|_| bits.signed(3).unwrap()).collect();
        assert_eq!(values, [-7, -4, 4, 7]);
        assert_eq!(bits.signed(0), Some(0));
    }

    #[test]
    fn bad_huffman_tables_are_refused() {
        let mut counts = [0u8; 16];
        counts[0] = 3; // three 1-bit codes
        assert!(Huffman::new(&counts, &[0, 1, 2]).is_none());
    }

    #[test]
    fn restart_needs_its_marker() {
        let mut bytes = entropy_bytes("0101");
        bytes.splice(1..1, [0xff, 0xd0]); // RST0 after the first byte
        let mut bits = BitReader::new(&bytes, 0);
        assert_eq!(bits.bits(4), Some(0b0101));
        bits.restart().unwrap();
        assert_eq!(bits.position(), 3);
        // Without a restart marker where one is due, the stream is refused.
        let bytes = entropy_bytes("01010101 01010101".replace(' ', "").as_str());
        let mut bits = BitReader::new(&bytes, 0);
        assert_eq!(bits.bits(8), Some(0b0101_0101));
        assert!(bits.restart().is_none());
    }
}

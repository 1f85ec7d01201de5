//! Colour palettes: class colours come from the model card; instance colours are derived
//! from a stable id (track id if present, else segment id) so they do not flicker.

use crate::model::Label;
use crate::segmentation::Segment;

use super::ColorBy;

/// A well-spread colour for an integer id (golden-ratio hue walk, fixed saturation/value).
pub fn id_color(id: u64) -> [u8; 3] {
    let h = (id as f64 * 0.618_033_988_749_895).fract();
    hsv_to_rgb(h, 0.65, 0.95)
}

fn hsv_to_rgb(h: f64, s: f64, v: f64) -> [u8; 3] {
    let i = (h * 6.0).floor();
    let f = h * 6.0 - i;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - f * s), v * (1.0 - (1.0 - f) * s));
    let (r, g, b) = match i as i64 % 6 {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    };
    [(r * 255.0).round() as u8, (g * 255.0).round() as u8, (b * 255.0).round() as u8]
}

/// Colour of a segment under the chosen scheme.
pub fn segment_color(seg: &Segment, labels: &[Label], by: ColorBy) -> [u8; 3] {
    match by {
        ColorBy::Class => labels
            .get(seg.label_id as usize)
            .map(|l| l.color)
            .unwrap_or_else(|| id_color(seg.label_id as u64 + 1_000)),
        ColorBy::Instance => {
            if seg.is_thing {
                id_color(seg.track_id.unwrap_or(seg.id as u64))
            } else {
                // Stuff has one region per class: keep its class colour.
                labels.get(seg.label_id as usize).map(|l| l.color).unwrap_or_else(|| id_color(seg.label_id as u64))
            }
        }
    }
}

/// RGB → BT.601 limited-range Y, U, V (what the I420/NV12 overlay writes).
pub fn rgb_to_yuv(c: [u8; 3]) -> [u8; 3] {
    let (r, g, b) = (c[0] as f32, c[1] as f32, c[2] as f32);
    let y = 16.0 + 0.256_788 * r + 0.504_129 * g + 0.097_906 * b;
    let u = 128.0 - 0.148_223 * r - 0.290_993 * g + 0.439_216 * b;
    let v = 128.0 + 0.439_216 * r - 0.367_788 * g - 0.071_427 * b;
    [y.round().clamp(0.0, 255.0) as u8, u.round().clamp(0.0, 255.0) as u8, v.round().clamp(0.0, 255.0) as u8]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_colors_differ_and_are_stable() {
        assert_eq!(id_color(5), id_color(5));
        assert_ne!(id_color(1), id_color(2));
    }

    #[test]
    fn instance_colour_follows_the_track_id_not_the_segment_id() {
        let seg = |id: u32, track_id: Option<u64>| Segment {
            id,
            label_id: 0,
            label: "thing".into(),
            score: 1.0,
            is_thing: true,
            area: 1,
            bbox: [0, 0, 1, 1],
            track_id,
        };
        let labels: Vec<Label> = Vec::new();
        // Same object (track 7) under segment ids 1 and 2 in two frames: same colour.
        assert_eq!(
            segment_color(&seg(1, Some(7)), &labels, ColorBy::Instance),
            segment_color(&seg(2, Some(7)), &labels, ColorBy::Instance)
        );
        assert_ne!(
            segment_color(&seg(1, Some(7)), &labels, ColorBy::Instance),
            segment_color(&seg(1, Some(8)), &labels, ColorBy::Instance)
        );
    }

    #[test]
    fn yuv_of_primaries() {
        assert_eq!(rgb_to_yuv([0, 0, 0]), [16, 128, 128]);
        assert_eq!(rgb_to_yuv([255, 255, 255]), [235, 128, 128]);
        let red = rgb_to_yuv([255, 0, 0]);
        assert!(red[2] > 200 && red[0] < 90, "{red:?}");
    }
}

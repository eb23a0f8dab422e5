//! The loader's options as Python passes them (a dict, by the builder's
//! setter names), applied to a `LoaderBuilder`.

use std::collections::BTreeMap;

use must_ds::loader::{Balance, CorruptPolicy, Crop, ImageOutput, LoaderBuilder, MissingMass};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use serde_json::Value;

fn opt_err(name: &str, v: &Value, want: &str) -> PyErr {
    PyTypeError::new_err(format!("option {name}={v}: expected {want}"))
}

fn pair(name: &str, v: &Value) -> PyResult<(f64, f64)> {
    match v.as_array().map(|a| a.as_slice()) {
        Some([a, b]) => match (a.as_f64(), b.as_f64()) {
            (Some(a), Some(b)) => Ok((a, b)),
            _ => Err(opt_err(name, v, "two numbers")),
        },
        _ => Err(opt_err(name, v, "two numbers")),
    }
}

fn triple(name: &str, v: Option<&Value>) -> PyResult<[f32; 3]> {
    let v = v.unwrap_or(&Value::Null);
    let a = v
        .as_array()
        .ok_or_else(|| opt_err(name, v, "three numbers"))?;
    let f: Vec<f32> = a
        .iter()
        .filter_map(|x| x.as_f64())
        .map(|x| x as f32)
        .collect();
    <[f32; 3]>::try_from(f).map_err(|_| opt_err(name, v, "three numbers"))
}

/// Applies the options (the builder's setters, by name) to `b`.
pub(crate) fn apply(
    mut b: LoaderBuilder,
    options: &serde_json::Map<String, Value>,
) -> PyResult<LoaderBuilder> {
    let u = |n: &str, v: &Value| {
        v.as_u64()
            .ok_or_else(|| opt_err(n, v, "a non-negative integer"))
    };
    let f = |n: &str, v: &Value| v.as_f64().ok_or_else(|| opt_err(n, v, "a number"));
    let s = |n: &str, v: &Value| {
        v.as_str()
            .map(str::to_owned)
            .ok_or_else(|| opt_err(n, v, "a string"))
    };
    let mut rank = (0usize, 1usize);
    for (name, v) in options {
        let n = name.as_str();
        b = match n {
            "batch_size" => b.batch_size(u(n, v)? as usize),
            "size" => match v {
                Value::Number(_) => {
                    let x = u32::try_from(u(n, v)?).map_err(|_| opt_err(n, v, "a size"))?;
                    b.output_size(x, x)
                }
                _ => {
                    let (w, h) = pair(n, v)?;
                    if w < 1.0
                        || h < 1.0
                        || w.fract() != 0.0
                        || h.fract() != 0.0
                        || w > 65535.0
                        || h > 65535.0
                    {
                        return Err(opt_err(n, v, "an int or (width, height) in 1..=65535"));
                    }
                    b.output_size(w as u32, h as u32)
                }
            },
            "label_stride" => {
                b.label_stride(u32::try_from(u(n, v)?).map_err(|_| opt_err(n, v, "1, 2, 4 or 8"))?)
            }
            "max_image_pixels" => b.max_image_pixels(u(n, v)?),
            "crop" => b.crop(crop(v)?),
            "flip" => b.flip(f(n, v)?),
            "augment" => b.augment(v.as_bool().ok_or_else(|| opt_err(n, v, "a bool"))?),
            "seed" => b.seed(u(n, v)?),
            "epoch" => b.epoch(u(n, v)?),
            "rank" => {
                rank.0 = u(n, v)? as usize;
                b
            }
            "world_size" => {
                rank.1 = u(n, v)? as usize;
                b
            }
            "workers" => b.workers((u(n, v)? as usize).max(1)),
            "prefetch_bytes" => b.prefetch_bytes(u(n, v)?),
            "prefetch_batches" => b.prefetch_batches(u(n, v)? as usize),
            "shuffle_row_groups" => b.shuffle_row_groups(u(n, v)? as usize),
            "requests_in_flight" => b.requests_in_flight((u(n, v)? as usize).max(1)),
            "image_output" => b.image_output(match v {
                Value::String(x) if x == "u8" => ImageOutput::U8,
                Value::String(x) if x == "imagenet" => ImageOutput::IMAGENET,
                Value::Object(o) => ImageOutput::F32 {
                    mean: triple("image_output.mean", o.get("mean"))?,
                    std: triple("image_output.std", o.get("std"))?,
                },
                _ => {
                    return Err(opt_err(
                        n,
                        v,
                        "\"u8\", \"imagenet\" or {\"mean\": [r, g, b], \"std\": [r, g, b]}",
                    ))
                }
            }),
            "min_score" => b.min_score(f(n, v)? as f32),
            "min_box_size" => b.min_box_size(f(n, v)? as f32),
            "min_confidence" => b.min_confidence(f(n, v)? as f32),
            "missing_mass" => b.missing_mass(match s(n, v)?.as_str() {
                "spread" => MissingMass::Spread,
                "renormalize" => MissingMass::Renormalize,
                _ => return Err(opt_err(n, v, "\"spread\" or \"renormalize\"")),
            }),
            "max_boxes" => b.max_boxes(match v {
                Value::Null => None,
                _ => Some(u(n, v)? as usize),
            }),
            "on_corrupt" => b.on_corrupt(match s(n, v)?.as_str() {
                "fail" => CorruptPolicy::Fail,
                "skip" => CorruptPolicy::Skip,
                _ => return Err(opt_err(n, v, "\"fail\" or \"skip\"")),
            }),
            "balance" => b.balance(match s(n, v)?.as_str() {
                "drop" => Balance::Drop,
                "pad" => Balance::Pad,
                _ => return Err(opt_err(n, v, "\"drop\" or \"pad\"")),
            }),
            "weights" => match v {
                Value::Null => b,
                Value::Object(o) => {
                    let mut w = BTreeMap::new();
                    for (k, x) in o {
                        w.insert(k.clone(), f(&format!("weights[{k:?}]"), x)?);
                    }
                    b.weights(w)
                }
                _ => return Err(opt_err(n, v, "a dict from source to weight")),
            },
            "epoch_size" => match v {
                Value::Null => b,
                _ => b.epoch_size(u(n, v)?),
            },
            _ => {
                return Err(PyTypeError::new_err(format!(
                    "Loader got an unexpected option {n:?}"
                )))
            }
        };
    }
    Ok(b.rank(rank.0, rank.1))
}

fn crop(v: &Value) -> PyResult<Crop> {
    let default_rr = Crop::RandomResized {
        scale: (0.08, 1.0),
        ratio: (3.0 / 4.0, 4.0 / 3.0),
    };
    let want = "\"resize\", \"random_resized\", {\"random_resized\": {\"scale\": [lo, hi], \"ratio\": [lo, hi]}} or {\"scale_jitter\": [lo, hi]}";
    match v {
        Value::String(s) if s == "resize" => Ok(Crop::Resize),
        Value::String(s) if s == "random_resized" => Ok(default_rr),
        Value::Object(o) if o.len() == 1 => {
            let (k, x) = o.iter().next().expect("one entry");
            match k.as_str() {
                "random_resized" => {
                    let Crop::RandomResized {
                        mut scale,
                        mut ratio,
                    } = default_rr
                    else {
                        unreachable!()
                    };
                    if let Some(s) = x.get("scale") {
                        scale = pair("crop.scale", s)?;
                    }
                    if let Some(r) = x.get("ratio") {
                        ratio = pair("crop.ratio", r)?;
                    }
                    Ok(Crop::RandomResized { scale, ratio })
                }
                "scale_jitter" => Ok(Crop::ScaleJitter {
                    range: pair("crop.scale_jitter", x)?,
                }),
                _ => Err(opt_err("crop", v, want)),
            }
        }
        _ => Err(opt_err("crop", v, want)),
    }
}

//! The model card (`<model>.json` beside the model file) and label sets.

mod card;

pub use card::{CardInput, Defaults, Label, ModelCard, Source, CARD_FORMAT, load_label_set};

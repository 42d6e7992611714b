//! The tools a pi agent offers its model (being written).

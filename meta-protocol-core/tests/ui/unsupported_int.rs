use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
struct H {
    #[field(offset = 0)]
    big: u128,
}

fn main() {}

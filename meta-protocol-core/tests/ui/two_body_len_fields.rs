use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
struct H {
    #[field(offset = 0, body_len)]
    a: u16,
    #[field(offset = 2, body_len)]
    b: u16,
}

fn main() {}

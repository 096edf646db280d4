use meta_protocol_core::BinaryHeader;

#[derive(BinaryHeader, Clone, Debug)]
struct H {
    #[field(offset = 0, correlation)]
    a: u32,
    #[field(offset = 4, correlation)]
    b: u32,
}

fn main() {}

// The service the Python peers speak in the interop test.
namespace py calc

exception DivByZero {
  1: string why
}

service Calculator {
  i32 add(1: i32 a, 2: i32 b),
  i32 div(1: i32 a, 2: i32 b) throws (1: DivByZero e),
  oneway void note(1: string text),
  string echo(1: string s),
}

// A client that also knows a method the server does not have.
service Extended extends Calculator {
  void missing(),
}

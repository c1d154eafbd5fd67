# A Go duration string (what time.ParseDuration accepts without a sign, as
# module.nix's durationRegex admits: "2s", "1m30s", "1.5h", "500ms") in
# seconds, as a float. module.nix derives systemd time limits from
# ghostbridge's own timeouts with it; internal/nixcheck compares it with
# time.ParseDuration.
#
# Builtins only (no nixpkgs), so the Go tests can evaluate it.
let
  units = {
    ns = 1.0e-9;
    us = 1.0e-6;
    "µs" = 1.0e-6;
    ms = 1.0e-3;
    s = 1.0;
    m = 60.0;
    h = 3600.0;
  };
  chars = s: builtins.genList (i: builtins.substring i 1 s) (builtins.stringLength s);
  # Decimal digits as a float, so leading zeros and long fractions are fine.
  digits = s: builtins.foldl' (acc: c: acc * 10.0 + builtins.fromJSON c) 0.0 (chars s);
  pow10 = n: builtins.foldl' (acc: _: acc * 10.0) 1.0 (builtins.genList (x: x) n);
  # The rest must start with a digit, so "5ms" cannot be read as 5m + "s".
  term = "([0-9]+)(\\.([0-9]*))?(ns|us|µs|ms|s|m|h)(|[0-9].*)";
  parse =
    acc: str:
    if str == "" then
      acc
    else
      let
        m = builtins.match term str;
        whole = builtins.elemAt m 0;
        frac = builtins.elemAt m 2;
        value = digits whole + (if frac == null then 0.0 else digits frac / pow10 (builtins.stringLength frac));
      in
      if m == null then
        throw "not a Go duration: ${str}"
      else
        parse (acc + value * units.${builtins.elemAt m 3}) (builtins.elemAt m 4);
in
d: if d == "0" then 0.0 else if d == "" then throw "not a Go duration: empty" else parse 0.0 d

//! The arithmetic the scripts do on their figures (`calc`, `verdict`):
//! numbers, `+ - * /`, unary minus and parentheses, and one comparison.

/// The value of an arithmetic expression.
pub fn eval(text: &str) -> Result<f64, String> {
    let mut parser = Parser { text, at: 0 };
    let value = parser.sum()?;
    parser.skip_space();
    if parser.at != text.len() {
        return Err(format!(
            "{text:?}: unexpected {:?} at {}",
            &text[parser.at..],
            parser.at
        ));
    }
    Ok(value)
}

/// Whether `A OP B` holds, OP one of `<= >= < > == !=`.
pub fn holds(condition: &str) -> Result<bool, String> {
    for op in ["<=", ">=", "==", "!=", "<", ">"] {
        if let Some((a, b)) = condition.split_once(op) {
            let (a, b) = (eval(a)?, eval(b)?);
            return Ok(match op {
                "<=" => a <= b,
                ">=" => a >= b,
                "==" => a == b,
                "!=" => a != b,
                "<" => a < b,
                _ => a > b,
            });
        }
    }
    Err(format!(
        "{condition:?}: expected a comparison (A <= B, A >= B, …)"
    ))
}

struct Parser<'a> {
    text: &'a str,
    at: usize,
}

impl Parser<'_> {
    fn skip_space(&mut self) {
        while self.text[self.at..].starts_with(' ') {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_space();
        self.text[self.at..].chars().next()
    }

    fn sum(&mut self) -> Result<f64, String> {
        let mut value = self.product()?;
        while let Some(op @ ('+' | '-')) = self.peek() {
            self.at += 1;
            let right = self.product()?;
            value = if op == '+' {
                value + right
            } else {
                value - right
            };
        }
        Ok(value)
    }

    fn product(&mut self) -> Result<f64, String> {
        let mut value = self.unary()?;
        while let Some(op @ ('*' | '/')) = self.peek() {
            self.at += 1;
            let right = self.unary()?;
            value = if op == '*' {
                value * right
            } else {
                value / right
            };
        }
        Ok(value)
    }

    fn unary(&mut self) -> Result<f64, String> {
        match self.peek() {
            Some('-') => {
                self.at += 1;
                Ok(-self.unary()?)
            }
            Some('+') => {
                self.at += 1;
                self.unary()
            }
            Some('(') => {
                self.at += 1;
                let value = self.sum()?;
                if self.peek() != Some(')') {
                    return Err(format!("{:?}: a ( is not closed", self.text));
                }
                self.at += 1;
                Ok(value)
            }
            _ => self.number(),
        }
    }

    fn number(&mut self) -> Result<f64, String> {
        self.skip_space();
        let rest = &self.text[self.at..];
        let bytes = rest.as_bytes();
        let mut end = 0;
        while end < bytes.len() {
            let c = bytes[end];
            let exponent_sign =
                (c == b'+' || c == b'-') && end > 0 && matches!(bytes[end - 1], b'e' | b'E');
            if c.is_ascii_digit() || c == b'.' || c == b'e' || c == b'E' || exponent_sign {
                end += 1;
            } else {
                break;
            }
        }
        let word = &rest[..end];
        if word == "nan" || rest.starts_with("nan") {
            self.at += 3;
            return Ok(f64::NAN);
        }
        let value = word
            .parse::<f64>()
            .map_err(|_| format!("{:?}: expected a number at {:?}", self.text, rest))?;
        self.at += end;
        Ok(value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_follows_precedence_and_parentheses() {
        assert_eq!(eval("1.5 + 2 * 3").unwrap(), 7.5);
        assert_eq!(eval("(812 - 4096) / 1024").unwrap(), -3.20703125);
        assert_eq!(eval("100 * (1 - 0.93)").unwrap(), 100.0 * (1.0 - 0.93));
        assert_eq!(eval("- 2 * -3").unwrap(), 6.0);
        assert_eq!(eval("1.23457e+06 / 1e3").unwrap(), 1234.57);
        assert_eq!(eval("3 * 1048576").unwrap(), 3_145_728.0);
    }

    #[test]
    fn comparisons_hold_or_not() {
        assert!(holds("1.2 <= 1.25").unwrap());
        assert!(!holds("0.79 >= 0.8").unwrap());
        assert!(holds("2945024 <= 3 * 1048576").unwrap());
        assert!(holds("4096 == 4096").unwrap());
        // A figure that could not be measured never meets a target.
        assert!(!holds("nan <= 1.25").unwrap());
        assert!(!holds("nan >= 0.8").unwrap());
    }

    #[test]
    fn malformed_expressions_are_refused_by_name() {
        assert!(eval("1 +").unwrap_err().contains("1 +"));
        assert!(eval("(1 + 2").unwrap_err().contains("not closed"));
        assert!(eval("2 x 3").unwrap_err().contains("unexpected"));
        assert!(holds("1 2").unwrap_err().contains("comparison"));
    }
}

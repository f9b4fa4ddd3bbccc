"""The code tasks: prompts, the grammar each is constrained with, and the checks.

Python: the function must be defined and pass the asserts (run in a subprocess with a timeout).
JavaScript: the function must be declared and, where `node` is installed, pass the cases; else
only the syntax (tree-sitter) and the declaration are checked. SQL: the query runs on an
in-memory SQLite database (FIXTURE) and must return the rows of the reference query.
"""

# ruff: noqa: E501 (one task per line reads best)
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Task:
    id: str
    language: str  # python | javascript | sql
    prompt: str
    name: str = ""  # the function to define (python, javascript)
    params: tuple[str, ...] = ()
    returns: str | None = None  # Python return annotation
    asserts: tuple[str, ...] = ()  # Python: assert statements; JavaScript: boolean expressions
    reference: str = ""  # SQL: the query whose rows are expected
    ordered: bool = False  # SQL: compare rows in order
    max_tokens: int = 200
    tags: tuple[str, ...] = field(default_factory=tuple)


def py(name, params, returns, prompt, *asserts, max_tokens=200) -> Task:
    return Task(f"py_{name}", "python", prompt, name, tuple(params), returns, asserts, max_tokens=max_tokens)


def js(name, params, prompt, *asserts, max_tokens=220) -> Task:
    return Task(f"js_{name}", "javascript", prompt, name, tuple(params), None, asserts, max_tokens=max_tokens)


def sql(id, prompt, reference, ordered=False) -> Task:
    return Task(f"sql_{id}", "sql", prompt, reference=reference, ordered=ordered, max_tokens=80)


PYTHON = [
    py("add", ["a: int", "b: int"], "int", "Write a Python function add(a, b) that returns the sum of a and b.",
       "assert add(2, 3) == 5", "assert add(-1, 1) == 0"),
    py("is_even", ["n: int"], "bool", "Write a Python function is_even(n) that returns True when n is even.",
       "assert is_even(4) is True", "assert is_even(7) is False"),
    py("square", ["x: int"], "int", "Write a Python function square(x) that returns x squared.",
       "assert square(3) == 9", "assert square(-4) == 16"),
    py("maximum", ["a: int", "b: int"], "int", "Write a Python function maximum(a, b) that returns the larger of a and b.",
       "assert maximum(2, 9) == 9", "assert maximum(5, -1) == 5"),
    py("reverse_string", ["s: str"], "str", "Write a Python function reverse_string(s) that returns s reversed.",
       "assert reverse_string('abc') == 'cba'", "assert reverse_string('') == ''"),
    py("count_vowels", ["s: str"], "int", "Write a Python function count_vowels(s) that returns the number of vowels (a, e, i, o, u) in s.",
       "assert count_vowels('hello') == 2", "assert count_vowels('xyz') == 0"),
    py("factorial", ["n: int"], "int", "Write a Python function factorial(n) that returns n factorial.",
       "assert factorial(0) == 1", "assert factorial(5) == 120"),
    py("sum_list", ["items: list[int]"], "int", "Write a Python function sum_list(items) that returns the sum of the numbers in the list items.",
       "assert sum_list([1, 2, 3]) == 6", "assert sum_list([]) == 0"),
    py("average", ["items: list[float]"], "float", "Write a Python function average(items) that returns the average of a non-empty list of numbers.",
       "assert average([1, 2, 3]) == 2", "assert average([5]) == 5"),
    py("is_palindrome", ["s: str"], "bool", "Write a Python function is_palindrome(s) that returns True when the string s reads the same backwards.",
       "assert is_palindrome('level') is True", "assert is_palindrome('abc') is False"),
    py("count_words", ["text: str"], "int", "Write a Python function count_words(text) that returns the number of words in text, separated by spaces.",
       "assert count_words('a b c') == 3", "assert count_words('hello') == 1"),
    py("fizzbuzz", ["n: int"], "str", "Write a Python function fizzbuzz(n) that returns 'Fizz' if n is divisible by 3, 'Buzz' if by 5, 'FizzBuzz' if by both, else str(n).",
       "assert fizzbuzz(3) == 'Fizz'", "assert fizzbuzz(10) == 'Buzz'", "assert fizzbuzz(15) == 'FizzBuzz'", "assert fizzbuzz(7) == '7'"),
]  # fmt: skip

JAVASCRIPT = [
    js("add", ["a", "b"], "Write a JavaScript function add(a, b) that returns the sum of a and b.",
       "add(2, 3) === 5", "add(-1, 1) === 0"),
    js("isEven", ["n"], "Write a JavaScript function isEven(n) that returns true when n is even.",
       "isEven(4) === true", "isEven(7) === false"),
    js("square", ["x"], "Write a JavaScript function square(x) that returns x squared.",
       "square(3) === 9", "square(-4) === 16"),
    js("maximum", ["a", "b"], "Write a JavaScript function maximum(a, b) that returns the larger of a and b.",
       "maximum(2, 9) === 9", "maximum(5, -1) === 5"),
    js("sumArray", ["arr"], "Write a JavaScript function sumArray(arr) that returns the sum of the numbers in the array arr.",
       "sumArray([1, 2, 3]) === 6", "sumArray([]) === 0"),
    js("reverseString", ["s"], "Write a JavaScript function reverseString(s) that returns the string s reversed.",
       "reverseString('abc') === 'cba'", "reverseString('') === ''"),
    js("factorial", ["n"], "Write a JavaScript function factorial(n) that returns n factorial.",
       "factorial(0) === 1", "factorial(5) === 120"),
    js("countVowels", ["s"], "Write a JavaScript function countVowels(s) that returns the number of vowels (a, e, i, o, u) in the string s.",
       "countVowels('hello') === 2", "countVowels('xyz') === 0"),
    js("isPalindrome", ["s"], "Write a JavaScript function isPalindrome(s) that returns true when the string s reads the same backwards.",
       "isPalindrome('level') === true", "isPalindrome('abc') === false"),
]  # fmt: skip

# The SQL fixture: tables, their columns (also the grammar's), and rows.
TABLES = {
    "users": ["id", "name", "age", "city"],
    "orders": ["id", "user_id", "product", "amount"],
}
FIXTURE = """
CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT, age INTEGER, city TEXT);
CREATE TABLE orders (id INTEGER PRIMARY KEY, user_id INTEGER, product TEXT, amount REAL);
INSERT INTO users VALUES (1, 'Ada', 36, 'London'), (2, 'Bob', 17, 'Paris'), (3, 'Cy', 52, 'London'),
    (4, 'Di', 29, 'Berlin'), (5, 'Ed', 41, 'Paris');
INSERT INTO orders VALUES (1, 1, 'book', 12.5), (2, 1, 'pen', 2.0), (3, 3, 'lamp', 30.0),
    (4, 4, 'book', 15.0), (5, 5, 'desk', 120.0), (6, 3, 'pen', 2.5);
"""
SCHEMA_PROMPT = (
    "Tables: users(id, name, age, city) and orders(id, user_id, product, amount). "
    "Write one SQLite SELECT query that "
)

SQL = [
    sql("all_names", SCHEMA_PROMPT + "returns the name of every user.", "SELECT name FROM users"),
    sql("adults", SCHEMA_PROMPT + "returns the names of users older than 30.", "SELECT name FROM users WHERE age > 30"),
    sql("count_users", SCHEMA_PROMPT + "counts the users.", "SELECT COUNT(*) FROM users"),
    sql("london", SCHEMA_PROMPT + "returns the names of the users who live in London.",
        "SELECT name FROM users WHERE city = 'London'"),
    sql("oldest_first", SCHEMA_PROMPT + "returns the names of all users ordered by age, oldest first.",
        "SELECT name FROM users ORDER BY age DESC", ordered=True),
    sql("total_amount", SCHEMA_PROMPT + "returns the total amount of all orders.", "SELECT SUM(amount) FROM orders"),
    sql("books", SCHEMA_PROMPT + "returns the ids of the orders whose product is 'book'.",
        "SELECT id FROM orders WHERE product = 'book'"),
    sql("max_age", SCHEMA_PROMPT + "returns the highest age of any user.", "SELECT MAX(age) FROM users"),
    sql("cities", SCHEMA_PROMPT + "returns each distinct city once.", "SELECT DISTINCT city FROM users"),
    sql("per_city", SCHEMA_PROMPT + "returns each city with the number of users living there.",
        "SELECT city, COUNT(*) FROM users GROUP BY city"),
    sql("big_orders", SCHEMA_PROMPT + "returns the products of orders with an amount over 10.",
        "SELECT product FROM orders WHERE amount > 10"),
]  # fmt: skip

TASKS: list[Task] = PYTHON + JAVASCRIPT + SQL

#!/usr/bin/env python3
"""Factual-recall prompts for the replication (REPLICATION.md), written for
this project in the spirit of the paper's Counterfact prompts.

The rule: one relation template per group, filled with a subject whose
answer is a well-known single fact; the prompt ends right before the answer
(no trailing space), the subject is marked, and every acceptable answer is
listed (the first word of the answer is what the model must put first).
Subjects are common knowledge (countries, capitals, landmarks, languages,
currencies, authors, companies, athletes); nothing is taken from Counterfact.

Writes tests/data/factual_prompts.json: {"rule": ..., "prompts": [{"text",
"subject", "relation", "answers": [...]}]}. Which of them SmolLM2-135M gets
right is decided later, by run.py, from the model's own top token.
"""
import json
import os

CAPITALS = {
    "France": "Paris", "Japan": "Tokyo", "Italy": "Rome", "Germany": "Berlin", "Spain": "Madrid",
    "Russia": "Moscow", "China": "Beijing", "Egypt": "Cairo", "Greece": "Athens",
    "England": "London", "Portugal": "Lisbon", "Austria": "Vienna", "Poland": "Warsaw",
    "Hungary": "Budapest", "Ireland": "Dublin", "Norway": "Oslo", "Sweden": "Stockholm",
    "Finland": "Helsinki", "Denmark": "Copenhagen", "Belgium": "Brussels",
    "the Netherlands": "Amsterdam", "Turkey": "Ankara", "Iran": "Tehran", "Iraq": "Baghdad",
    "India": "New Delhi", "Thailand": "Bangkok", "Vietnam": "Hanoi", "South Korea": "Seoul",
    "Indonesia": "Jakarta", "the Philippines": "Manila", "Kenya": "Nairobi", "Peru": "Lima",
    "Argentina": "Buenos Aires", "Chile": "Santiago", "Colombia": "Bogota", "Cuba": "Havana",
    "Mexico": "Mexico City", "Canada": "Ottawa", "Australia": "Canberra", "Scotland": "Edinburgh",
    "Ukraine": "Kyiv", "Czechia": "Prague", "Romania": "Bucharest", "Bulgaria": "Sofia",
    "Serbia": "Belgrade", "Croatia": "Zagreb", "Switzerland": "Bern", "Israel": "Jerusalem",
    "Lebanon": "Beirut", "Syria": "Damascus", "Saudi Arabia": "Riyadh", "Pakistan": "Islamabad",
    "Afghanistan": "Kabul", "Nepal": "Kathmandu", "Ethiopia": "Addis Ababa", "Nigeria": "Abuja",
    "Ghana": "Accra", "Morocco": "Rabat", "Algeria": "Algiers", "Venezuela": "Caracas",
}
LANDMARKS = {
    "The Eiffel Tower": "Paris", "The Colosseum": "Rome", "Big Ben": "London",
    "The Statue of Liberty": "New York", "The Brandenburg Gate": "Berlin",
    "The Kremlin": "Moscow", "The Forbidden City": "Beijing", "The Acropolis": "Athens",
    "The Sagrada Familia": "Barcelona", "The Golden Gate Bridge": "San Francisco",
    "The Louvre": "Paris", "Buckingham Palace": "London", "The Vatican": "Rome",
    "The Space Needle": "Seattle", "The Hollywood sign": "Los Angeles",
    "The Leaning Tower of Pisa": "Pisa", "The Sydney Opera House": "Sydney",
    "The White House": "Washington", "The Empire State Building": "New York",
    "Times Square": "New York", "The Tower of London": "London", "The Parthenon": "Athens",
    "The Blue Mosque": "Istanbul", "The Taj Mahal": "Agra", "The Alhambra": "Granada",
    "The Rijksmuseum": "Amsterdam", "Red Square": "Moscow", "The Prado Museum": "Madrid",
    "Central Park": "New York", "The Gateway Arch": "St", "The Little Mermaid statue": "Copenhagen",
}
LANGUAGES = {
    "France": "French", "Germany": "German", "Italy": "Italian", "Spain": "Spanish",
    "Japan": "Japanese", "China": "Chinese|Mandarin", "Russia": "Russian", "Brazil": "Portuguese",
    "Portugal": "Portuguese", "Greece": "Greek", "Poland": "Polish", "Turkey": "Turkish",
    "Mexico": "Spanish", "Argentina": "Spanish", "Egypt": "Arabic", "Saudi Arabia": "Arabic",
    "Iran": "Persian|Farsi", "Israel": "Hebrew", "Sweden": "Swedish", "Norway": "Norwegian",
    "Finland": "Finnish", "Denmark": "Danish", "the Netherlands": "Dutch", "Hungary": "Hungarian",
    "South Korea": "Korean", "Vietnam": "Vietnamese", "Thailand": "Thai", "Ukraine": "Ukrainian",
    "Romania": "Romanian", "Czechia": "Czech", "Indonesia": "Indonesian",
    "England": "English", "Australia": "English", "Chile": "Spanish", "Peru": "Spanish",
}
CURRENCIES = {
    "Japan": "yen", "the United Kingdom": "pound", "the United States": "dollar|US",
    "India": "rupee|Indian", "China": "yuan|renminbi", "Russia": "ruble|rouble", "Mexico": "peso",
    "Switzerland": "franc|Swiss", "Germany": "euro", "France": "euro", "Italy": "euro",
    "Spain": "euro", "Brazil": "real", "South Korea": "won", "Sweden": "krona", "Turkey": "lira",
    "Poland": "zloty", "Canada": "dollar|Canadian", "Australia": "dollar|Australian",
    "South Africa": "rand", "Israel": "shekel", "Thailand": "baht", "Vietnam": "dong",
}
CONTINENTS = {
    "France": "Europe", "Germany": "Europe", "Italy": "Europe", "Spain": "Europe",
    "Poland": "Europe", "Sweden": "Europe", "Norway": "Europe", "Greece": "Europe",
    "Japan": "Asia", "China": "Asia", "India": "Asia", "Thailand": "Asia", "Vietnam": "Asia",
    "Nepal": "Asia", "Mongolia": "Asia", "Pakistan": "Asia", "Kenya": "Africa",
    "Nigeria": "Africa", "Egypt": "Africa", "Ethiopia": "Africa", "Ghana": "Africa",
    "Morocco": "Africa", "Senegal": "Africa", "Brazil": "South America",
    "Argentina": "South America", "Peru": "South America", "Chile": "South America",
    "Colombia": "South America", "Canada": "North America", "Mexico": "North America",
}
AUTHORS = {
    "Hamlet": "William Shakespeare|Shakespeare", "Romeo and Juliet": "William Shakespeare|Shakespeare",
    "Macbeth": "William Shakespeare|Shakespeare", "Pride and Prejudice": "Jane Austen",
    "War and Peace": "Leo Tolstoy|Tolstoy", "Anna Karenina": "Leo Tolstoy|Tolstoy",
    "Crime and Punishment": "Fyodor Dostoevsky|Dostoevsky", "Don Quixote": "Miguel de Cervantes|Cervantes",
    "Oliver Twist": "Charles Dickens", "A Christmas Carol": "Charles Dickens",
    "Great Expectations": "Charles Dickens", "Moby-Dick": "Herman Melville",
    "The Old Man and the Sea": "Ernest Hemingway", "Nineteen Eighty-Four": "George Orwell",
    "Animal Farm": "George Orwell", "The Great Gatsby": "F. Scott Fitzgerald|Scott",
    "Harry Potter": "J.K. Rowling|JK|J. K. Rowling", "The Hobbit": "J.R.R. Tolkien|Tolkien|J. R. R. Tolkien",
    "The Lord of the Rings": "J.R.R. Tolkien|Tolkien|J. R. R. Tolkien", "Frankenstein": "Mary Shelley",
    "Dracula": "Bram Stoker", "The Odyssey": "Homer", "The Iliad": "Homer",
    "Les Miserables": "Victor Hugo", "Adventures of Huckleberry Finn": "Mark Twain",
    "The Adventures of Tom Sawyer": "Mark Twain", "Sherlock Holmes": "Arthur Conan Doyle|Sir",
}
HEADQUARTERS = {
    "Microsoft": "Redmond", "Apple": "Cupertino", "Google": "Mountain View", "Amazon": "Seattle",
    "Toyota": "Toyota|Japan", "Nokia": "Espoo|Finland", "IKEA": "Sweden|Delft|Leiden",
    "Boeing": "Chicago|Arlington|Seattle", "Coca-Cola": "Atlanta", "Walmart": "Bentonville",
    "Samsung": "Seoul|Suwon|South", "Volkswagen": "Wolfsburg|Germany", "Nintendo": "Kyoto|Japan",
    "Sony": "Tokyo|Japan", "Ferrari": "Maranello|Italy", "Nestle": "Vevey|Switzerland",
}
ATHLETES = {
    "Lionel Messi": "soccer|football", "Cristiano Ronaldo": "soccer|football",
    "Michael Jordan": "basketball", "LeBron James": "basketball", "Kobe Bryant": "basketball",
    "Serena Williams": "tennis", "Roger Federer": "tennis", "Rafael Nadal": "tennis",
    "Tiger Woods": "golf", "Tom Brady": "football|American", "Babe Ruth": "baseball",
    "Wayne Gretzky": "hockey|ice", "Usain Bolt": "track|sprint|running|athletics",
    "Michael Phelps": "swimming", "Muhammad Ali": "boxing", "Pele": "soccer|football",
    "Novak Djokovic": "tennis", "Shaquille O'Neal": "basketball", "Diego Maradona": "soccer|football",
}

CITIES = {
    "Paris": "France", "Lyon": "France", "Marseille": "France", "Berlin": "Germany",
    "Munich": "Germany", "Hamburg": "Germany", "Frankfurt": "Germany", "Rome": "Italy",
    "Milan": "Italy", "Naples": "Italy", "Venice": "Italy", "Florence": "Italy", "Madrid": "Spain",
    "Barcelona": "Spain", "Seville": "Spain", "Valencia": "Spain", "Lisbon": "Portugal",
    "Porto": "Portugal", "London": "England|United|UK|Britain", "Manchester": "England|United|UK|Britain",
    "Liverpool": "England|United|UK|Britain", "Edinburgh": "Scotland|United|UK|Britain",
    "Dublin": "Ireland", "Amsterdam": "the Netherlands|Netherlands|Holland",
    "Rotterdam": "the Netherlands|Netherlands|Holland", "Brussels": "Belgium", "Vienna": "Austria",
    "Zurich": "Switzerland", "Geneva": "Switzerland", "Stockholm": "Sweden", "Oslo": "Norway",
    "Copenhagen": "Denmark", "Helsinki": "Finland", "Warsaw": "Poland", "Krakow": "Poland",
    "Prague": "the Czech Republic|Czech|Czechia", "Budapest": "Hungary", "Athens": "Greece",
    "Istanbul": "Turkey", "Moscow": "Russia", "Saint Petersburg": "Russia", "Kyiv": "Ukraine",
    "Tokyo": "Japan", "Osaka": "Japan", "Kyoto": "Japan", "Beijing": "China", "Shanghai": "China",
    "Hong Kong": "China", "Seoul": "South Korea|Korea", "Busan": "South Korea|Korea",
    "Mumbai": "India", "Delhi": "India", "Bangalore": "India", "Kolkata": "India",
    "Bangkok": "Thailand", "Hanoi": "Vietnam", "Jakarta": "Indonesia", "Manila": "the Philippines|Philippines",
    "Karachi": "Pakistan", "Tehran": "Iran", "Baghdad": "Iraq", "Cairo": "Egypt",
    "Nairobi": "Kenya", "Lagos": "Nigeria", "Johannesburg": "South Africa", "Cape Town": "South Africa",
    "Casablanca": "Morocco", "Sydney": "Australia", "Melbourne": "Australia", "Brisbane": "Australia",
    "Auckland": "New Zealand", "Toronto": "Canada", "Vancouver": "Canada", "Montreal": "Canada",
    "Chicago": "the United States|United|US|USA|America", "Boston": "the United States|United|US|USA|America",
    "Houston": "the United States|United|US|USA|America", "Mexico City": "Mexico",
    "Guadalajara": "Mexico", "Havana": "Cuba", "Lima": "Peru", "Bogota": "Colombia",
    "Santiago": "Chile", "Buenos Aires": "Argentina", "Sao Paulo": "Brazil", "Rio de Janeiro": "Brazil",
    "Caracas": "Venezuela", "Quito": "Ecuador", "Montevideo": "Uruguay", "La Paz": "Bolivia",
    "Brasilia": "Brazil", "Salvador": "Brazil", "Cordoba": "Argentina|Spain", "Bilbao": "Spain",
    "Turin": "Italy", "Bologna": "Italy", "Palermo": "Italy", "Cologne": "Germany",
    "Stuttgart": "Germany", "Dresden": "Germany", "Nice": "France", "Bordeaux": "France",
    "Toulouse": "France", "Antwerp": "Belgium", "Gothenburg": "Sweden", "Bergen": "Norway",
    "Salzburg": "Austria", "Thessaloniki": "Greece", "Ankara": "Turkey", "Dubai": "the United Arab Emirates|United|UAE",
    "Riyadh": "Saudi Arabia|Saudi", "Doha": "Qatar", "Kabul": "Afghanistan", "Dhaka": "Bangladesh",
    "Kathmandu": "Nepal", "Colombo": "Sri Lanka|Sri", "Singapore": "Singapore", "Kuala Lumpur": "Malaysia",
    "Taipei": "Taiwan", "Nagoya": "Japan", "Hiroshima": "Japan", "Guangzhou": "China",
    "Shenzhen": "China", "Perth": "Australia", "Adelaide": "Australia", "Calgary": "Canada",
    "Ottawa": "Canada", "Accra": "Ghana", "Addis Ababa": "Ethiopia", "Dakar": "Senegal",
    "Tunis": "Tunisia", "Algiers": "Algeria", "Marrakesh": "Morocco", "Alexandria": "Egypt",
}

GROUPS = [
    ("capital", "The capital of {s} is the city of", CAPITALS),
    ("landmark city", "{s} is located in the city of", LANDMARKS),
    ("official language", "The official language of {s} is", LANGUAGES),
    ("currency", "The currency of {s} is the", CURRENCIES),
    ("continent", "{s} is a country in the continent of", CONTINENTS),
    ("author", "The book {s} was written by", AUTHORS),
    ("headquarters", "The company {s} has its headquarters in", HEADQUARTERS),
    ("sport", "{s} is famous for playing the sport of", ATHLETES),
    ("city country", "{s} is a city in the country of", CITIES),
]

RULE = ("One relation template per group (capital, landmark city, official language, currency, "
        "continent, author, headquarters, sport, city country), filled with a well-known subject; the prompt "
        "ends right before the answer; the subject is marked; every acceptable answer is listed. "
        "A prompt is kept when the model's top token, stripped of spaces and lowercased, is a "
        "non-empty prefix of one of the answers (or an answer is a prefix of it).")


def main():
    out = []
    for relation, template, table in GROUPS:
        for subject, answers in table.items():
            out.append({"text": template.format(s=subject), "subject": subject,
                        "relation": relation, "answers": answers.split("|")})
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
    path = os.path.join(root, "tests", "data", "factual_prompts.json")
    with open(path, "w") as f:
        json.dump({"rule": RULE, "prompts": out}, f, indent=1)
        f.write("\n")
    print(f"{len(out)} prompts -> {os.path.relpath(path, root)}")


if __name__ == "__main__":
    main()

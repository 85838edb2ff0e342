"""Topic banks for synthetic traffic: prompts and answer sentences that read as one subject.

Answers to one prompt are drawn from its topic's sentences with the prompt's
subject filled in, so two answers to the same prompt are related and answers
to prompts of different topics are not. The simulated provider uses the same
banks to answer closer to or further from a logged answer.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Topic:
    """One kind of request a product sends to its models."""

    key: str
    feature: str
    prompts: tuple[str, ...]
    subjects: tuple[str, ...]
    sentences: tuple[str, ...]


TOPICS: tuple[Topic, ...] = (
    Topic(
        "password_reset",
        "support",
        (
            "I can't log in to {subject}. How do I reset my password?",
            "My {subject} password stopped working after the update. What should I do?",
            "How can I recover access to my {subject} account?",
        ),
        ("the mobile app", "the admin console", "my workspace", "the billing portal"),
        (
            "Open the sign-in page of {subject} and choose 'Forgot password'.",
            "Enter the email address linked to your account and we will send a reset link.",
            "The reset link expires after 30 minutes, so use it promptly.",
            "Pick a new password with at least twelve characters, mixing letters, numbers and symbols.",
            "If the email does not arrive, check your spam folder or ask your administrator to resend it.",
            "After resetting, sign out of other devices so old sessions cannot reuse the former password.",
            "If two-factor authentication is on, have your authenticator app ready to confirm the change.",
            "Accounts locked after repeated failed attempts unlock automatically after fifteen minutes.",
        ),
    ),
    Topic(
        "refund",
        "support",
        (
            "I was charged twice for {subject}. Can I get a refund?",
            "What is your refund policy for {subject}?",
            "How long does a refund for {subject} take to arrive?",
        ),
        ("my annual plan", "the premium upgrade", "a cancelled order", "the extra seats"),
        (
            "Refunds for {subject} are issued to the original payment method.",
            "Duplicate charges are usually an authorisation hold that your bank releases within five business days.",
            "You can request a refund within 30 days of purchase from the billing page.",
            "Once approved, card refunds take five to ten business days to appear on your statement.",
            "Include the invoice number so the billing team can match the charge quickly.",
            "Partial refunds are prorated for the unused part of the billing period.",
            "If you paid by bank transfer, the refund is sent to the account that made the payment.",
            "We confirm every refund by email with the amount and the expected arrival date.",
        ),
    ),
    Topic(
        "python_lists",
        "coding",
        (
            "How do I {subject} in Python?",
            "What's the most idiomatic way to {subject} with a Python list?",
            "Show me how to {subject} efficiently in Python.",
        ),
        (
            "remove duplicates from a list",
            "flatten a nested list",
            "sort a list of dictionaries by a key",
            "filter a list with a condition",
        ),
        (
            "To {subject}, a list comprehension is usually the clearest option.",
            "Python lists keep insertion order, which matters when you deduplicate or sort them.",
            "The built-in sorted function accepts a key argument, for example key=lambda item: item['age'].",
            "Converting to a set removes duplicates but loses the original order; dict.fromkeys keeps it.",
            "For nested lists, itertools.chain.from_iterable flattens one level without building intermediate lists.",
            "Avoid modifying a list while iterating over it; build a new list instead.",
            "For very large data, consider a generator expression to save memory.",
            "Here is an example: result = [x for x in values if x > 0].",
        ),
    ),
    Topic(
        "sql_joins",
        "coding",
        (
            "Explain the difference between {subject} in SQL.",
            "When should I use {subject} in a SQL query?",
            "Write a SQL query that uses {subject}.",
        ),
        ("inner and left joins", "a full outer join", "a self join", "joins and subqueries"),
        (
            "An inner join returns only the rows that match in both tables.",
            "A left join keeps every row of the left table and fills missing matches with NULL.",
            "Use {subject} when you need to combine related rows from several tables on a key.",
            "Join on indexed columns, such as primary and foreign keys, to keep the query fast.",
            "A self join compares rows of the same table, for example employees with their managers.",
            "Filtering in the ON clause and in the WHERE clause gives different results for outer joins.",
            "For example: SELECT o.id, c.name FROM orders o LEFT JOIN customers c ON c.id = o.customer_id.",
            "Check the query plan with EXPLAIN to see whether the database uses a hash join or a nested loop.",
        ),
    ),
    Topic(
        "travel_itinerary",
        "assistant",
        (
            "Plan a three-day trip to {subject}.",
            "What should I see on a weekend in {subject}?",
            "Suggest an itinerary for {subject} on a budget.",
        ),
        ("Lisbon", "Kyoto", "Mexico City", "Edinburgh"),
        (
            "Start your first day in {subject} with a walking tour of the old town.",
            "Book museum tickets online in advance to skip the queues.",
            "Public transport passes for 24 or 72 hours are the cheapest way to get around.",
            "Spend the second day on a day trip to the coast or the surrounding hills.",
            "Try the local food markets for an affordable lunch with regional dishes.",
            "Evenings are best for a viewpoint at sunset followed by dinner in a neighbourhood restaurant.",
            "Pack comfortable shoes: the historic centre is hilly and best explored on foot.",
            "Spring and early autumn bring mild weather and fewer crowds.",
        ),
    ),
    Topic(
        "recipe",
        "assistant",
        (
            "Give me a simple recipe for {subject}.",
            "How do I make {subject} at home?",
            "What do I need to cook {subject} for four people?",
        ),
        ("tomato pasta", "vegetable curry", "banana bread", "chicken soup"),
        (
            "For {subject}, gather your ingredients and prepare them before you start cooking.",
            "Sauté onion and garlic in olive oil over medium heat until soft and fragrant.",
            "Season gradually with salt and pepper, tasting as you go.",
            "Simmer gently for twenty minutes so the flavours come together.",
            "Preheat the oven to 180 degrees Celsius and grease the tin.",
            "Fresh herbs such as basil or coriander brighten the dish just before serving.",
            "Leftovers keep in the fridge for three days in an airtight container.",
            "For four people, double the quantities and use a larger pot.",
        ),
    ),
    Topic(
        "contract_summary",
        "summarize",
        (
            "Summarize the key terms of {subject} below.",
            "What are the main obligations in {subject}?",
            "List the risks in {subject}.",
        ),
        ("this services agreement", "the vendor contract", "this lease", "the NDA"),
        (
            "{subject} runs for an initial term of twelve months and renews automatically.",
            "Either party may terminate with sixty days' written notice.",
            "Payment is due within thirty days of each invoice, with late fees after that.",
            "Confidential information must be protected for three years after termination.",
            "Liability is capped at the fees paid in the previous twelve months.",
            "The supplier must maintain insurance and comply with data-protection law.",
            "Disputes go to arbitration in the jurisdiction named in the governing-law clause.",
            "The main risk is the automatic renewal, which requires a calendar reminder to avoid.",
        ),
    ),
    Topic(
        "meeting_notes",
        "summarize",
        (
            "Summarize {subject} into action items.",
            "Write a short recap of {subject}.",
            "What decisions were made in {subject}?",
        ),
        ("the product sync", "yesterday's planning meeting", "the quarterly review", "the incident retro"),
        (
            "In {subject}, the team agreed to ship the release on Thursday.",
            "Action item: Maria will update the roadmap and share it by Friday.",
            "The team decided to postpone the pricing change until after the customer survey.",
            "Open question: who owns the migration of the legacy reports?",
            "Engineering flagged a risk that the test environment is not ready.",
            "Next meeting will review the survey results and the launch checklist.",
            "Customer feedback highlighted slow exports, which is now the top priority.",
            "The budget for the new hires was approved for the next quarter.",
        ),
    ),
    Topic(
        "email_draft",
        "writing",
        (
            "Draft a polite email to {subject}.",
            "Write a short message to {subject} about the delay.",
            "Help me reply to {subject}.",
        ),
        (
            "a customer about a late delivery",
            "my manager asking for leave",
            "a supplier about an invoice",
            "a recruiter",
        ),
        (
            "Dear recipient, thank you for your patience while we sort this out.",
            "I wanted to let you know about an update regarding {subject}.",
            "We expect to resolve the issue by the end of the week and will confirm once it is done.",
            "Please let me know if another date works better for you.",
            "I apologise for the inconvenience and appreciate your understanding.",
            "I have attached the relevant documents for your reference.",
            "Feel free to reach out with any questions in the meantime.",
            "Kind regards, and thank you again for your flexibility.",
        ),
    ),
    Topic(
        "product_description",
        "writing",
        (
            "Write a product description for {subject}.",
            "Create a catchy listing for {subject}.",
            "Describe {subject} for an online store.",
        ),
        (
            "a waterproof hiking backpack",
            "a stainless steel water bottle",
            "noise-cancelling headphones",
            "a standing desk",
        ),
        (
            "Meet {subject}, designed for everyday comfort and durability.",
            "Built from premium materials, it is made to last for years of daily use.",
            "Its lightweight design makes it easy to carry wherever you go.",
            "Thoughtful details such as padded straps and hidden pockets add convenience.",
            "Available in several colours to match your style.",
            "Backed by a two-year warranty and free returns within thirty days.",
            "Easy to clean and built to handle rain, dust and the occasional drop.",
            "The perfect gift for commuters, travellers and outdoor lovers.",
        ),
    ),
    Topic(
        "k8s_debug",
        "coding",
        (
            "My Kubernetes pod is stuck in {subject}. How do I debug it?",
            "Why would a deployment show {subject}?",
            "How do I fix {subject} in Kubernetes?",
        ),
        ("CrashLoopBackOff", "ImagePullBackOff", "Pending state", "OOMKilled"),
        (
            "A pod in {subject} usually points to a problem with the container or its resources.",
            "Run kubectl describe pod to read the events at the bottom of the output.",
            "kubectl logs with the --previous flag shows the output of the last crashed container.",
            "Check that the image name and tag exist and that the registry credentials are configured.",
            "Pending pods often mean no node has enough CPU or memory for the requested resources.",
            "OOMKilled means the container exceeded its memory limit; raise the limit or reduce usage.",
            "Verify liveness and readiness probes are not killing a container that starts slowly.",
            "Use kubectl get events --sort-by=.metadata.creationTimestamp to see the timeline.",
        ),
    ),
    Topic(
        "search_query",
        "search",
        (
            "Find documents about {subject}.",
            "Search the knowledge base for {subject}.",
            "What do our docs say about {subject}?",
        ),
        ("API rate limits", "single sign-on setup", "data retention", "webhook retries"),
        (
            "The knowledge base has three articles about {subject}.",
            "The most relevant result is the administrator guide, section four.",
            "According to the docs, limits are applied per API key and reset every minute.",
            "Single sign-on supports SAML and OpenID Connect and is configured by an admin.",
            "Data is retained for ninety days by default and can be shortened in settings.",
            "Failed webhooks are retried with exponential backoff for up to a day.",
            "A related article covers troubleshooting and common error codes.",
            "The changelog mentions an update to this behaviour in the latest release.",
        ),
    ),
    Topic(
        "math_homework",
        "tutor",
        (
            "Explain how to solve {subject}.",
            "Can you walk me through {subject} step by step?",
            "I don't understand {subject}. Help?",
        ),
        ("quadratic equations", "derivatives of products", "percent change problems", "systems of linear equations"),
        (
            "Let's solve {subject} one step at a time.",
            "First write the equation in standard form so every term is on one side.",
            "The quadratic formula gives x = (-b ± sqrt(b^2 - 4ac)) / 2a.",
            "For a product, the derivative is the first times the derivative of the second "
            "plus the second times the derivative of the first.",
            "Percent change equals the new value minus the old value, divided by the old value, times one hundred.",
            "With two equations, eliminate one variable by adding or subtracting the equations.",
            "Always check your answer by substituting it back into the original equation.",
            "Practice with a few similar problems to make the method stick.",
        ),
    ),
    Topic(
        "health_info",
        "assistant",
        (
            "What are common symptoms of {subject}?",
            "How is {subject} usually treated?",
            "When should I see a doctor about {subject}?",
        ),
        ("seasonal allergies", "a migraine", "dehydration", "a sprained ankle"),
        (
            "Common signs of {subject} vary from person to person.",
            "Rest, fluids and over-the-counter pain relief help with mild cases.",
            "See a doctor if symptoms are severe, last more than a few days, or keep coming back.",
            "Antihistamines reduce sneezing and itchy eyes caused by pollen.",
            "Applying ice for twenty minutes at a time reduces swelling after an injury.",
            "Dark urine, dizziness and dry mouth are early warning signs of low fluids.",
            "Keeping a symptom diary helps identify triggers.",
            "This is general information, not a diagnosis; a clinician can advise on your situation.",
        ),
    ),
    Topic(
        "translation",
        "writing",
        (
            "Translate {subject} into French.",
            "How do you say {subject} in Spanish?",
            "Translate {subject} into German, keeping it formal.",
        ),
        (
            "'Where is the train station?'",
            "'Thank you for your order'",
            "'The meeting is moved to Monday'",
            "'Please find the invoice attached'",
        ),
        (
            "Here is the translation of {subject}.",
            "In French: 'Où est la gare ?' is the natural way to ask.",
            "In Spanish you would say: '¿Dónde está la estación de tren?'",
            "The formal German version uses 'Sie' rather than 'du'.",
            "For business emails, keep the tone polite and the sentences short.",
            "Word order changes in German subordinate clauses, with the verb at the end.",
            "Spanish questions start with an inverted question mark.",
            "A native speaker may phrase it slightly differently depending on the region.",
        ),
    ),
    Topic(
        "data_analysis",
        "coding",
        (
            "How do I {subject} with pandas?",
            "What's the fastest way to {subject} in a dataframe?",
            "Show code to {subject}.",
        ),
        ("group by a column and average", "join two dataframes", "pivot a table", "handle missing values"),
        (
            "To {subject}, load the data into a dataframe first.",
            "Use df.groupby('column')['value'].mean() to compute averages per group.",
            "merge combines two dataframes on a key, like a SQL join.",
            "pivot_table reshapes long data into a wide table with an aggregation function.",
            "fillna replaces missing values; dropna removes rows that contain them.",
            "Check dtypes before aggregating so numeric columns are not stored as strings.",
            "For large files, read only the columns you need with the usecols argument.",
            "Polars offers a faster, lazy alternative with a very similar API.",
        ),
    ),
)
